package gateway

import "tollgate.dev/tollgate/internal/config"

// ReloadAudit is reloadAudit, for the external tests.
func (g *Gateway) ReloadAudit(prev, next *config.Gateway) (restart []string, commit, abort func(), err error) {
	return g.reloadAudit(prev, next)
}
