package gateway

import (
	"time"
)

// svidRotationPoll is how often the gateway looks for a new SVID serial.
const svidRotationPoll = 2 * time.Second

// watchRotation closes idle upstream connections after the SVID rotates, so
// pooled connections made with the old SVID age out: requests in flight finish
// on their connection, and the next request handshakes with the new SVID. (New
// handshakes always present the current SVID; this only retires old sessions
// before the upstream would see a certificate near its end.)
func (g *Gateway) watchRotation() {
	defer close(g.rotationDone)
	t := time.NewTicker(svidRotationPoll)
	defer t.Stop()
	serial := g.src.Status().Serial
	for {
		select {
		case <-g.draining:
			return
		case <-t.C:
			st := g.src.Status()
			if st.Serial == "" || st.Serial == serial {
				continue
			}
			g.log.Info("SVID rotated; retiring idle upstream connections", "spiffeID", st.ID.String(), "notAfter", st.NotAfter)
			serial = st.Serial
			for _, r := range g.router.Routes() {
				if tr, ok := r.Transport.(interface{ CloseIdleConnections() }); ok {
					tr.CloseIdleConnections()
				}
			}
		}
	}
}
