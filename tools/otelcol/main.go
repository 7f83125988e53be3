// Program otelcol is the small OpenTelemetry Collector the audit pipeline's
// end-to-end tests receive OTLP logs (and syslog over TLS) with: the OTLP
// receiver, the contrib syslog receiver and the file exporter, all of one
// release. Hand-written in the shape of the Collector Builder's output (the
// builder itself fails on a module the proxy refuses, see
// scripts/otelcol/install.sh).
package main

import (
	"os"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"
	"go.opentelemetry.io/collector/confmap/provider/yamlprovider"
	"go.opentelemetry.io/collector/otelcol"
)

func main() {
	set := otelcol.CollectorSettings{
		BuildInfo: component.BuildInfo{Command: "otelcol-tollgate", Description: "OpenTelemetry Collector for Tollgate's audit tests", Version: coreVersion},
		Factories: components,
		ConfigProviderSettings: otelcol.ConfigProviderSettings{
			ResolverSettings: confmap.ResolverSettings{
				ProviderFactories: []confmap.ProviderFactory{envprovider.NewFactory(), fileprovider.NewFactory(), yamlprovider.NewFactory()},
			},
		},
	}
	if err := otelcol.NewCommand(set).Execute(); err != nil {
		os.Exit(1) // cobra printed the error
	}
}
