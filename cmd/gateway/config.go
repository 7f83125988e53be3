package main

import "io"

func cmdConfig(args []string, stdout, stderr io.Writer) int {
	c := newCommand("config", "config -c gateway.yaml\n\nPrints the configuration as the gateway would run it: defaults filled in, relative\npaths resolved, "+envAdminListen+" applied, durations as Go durations, and secrets\nelided (they are referenced by file). The file is checked first, as by check.", stdout, stderr)
	cfg, _, exit, ok := c.loadGatewayFile(args)
	if !ok {
		return exit
	}
	out, err := cfg.Effective()
	if err != nil {
		return c.fail("%v", err)
	}
	stdout.Write(out)
	return 0
}
