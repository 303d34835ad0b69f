// Package scalefixture generates the large configuration of the bench's scenario 5 (10,000
// partners × 5 sites × 5 endpoints), so the bench and config's scale tests load the same
// files.
package scalefixture

import (
	"fmt"
	"strings"
)

// SyncSaga is bench-sync, the pure 3-step saga (set, set, respond) every endpoint runs.
const SyncSaga = `name: bench-sync
description: bench — pure 3-step saga (set, set, respond)
timeout: 5s
steps:
  - name: event
    set: {event: "${ body.eventType }"}
  - name: loan
    set: {loan: "${ body.meta.resourceId }"}
  - name: answer
    respond:
      status: 200
      body: {status: OK, code: 200, message: received, run_id: "${ run.id }", event: "${ vars.event }", loan: "${ vars.loan }"}
`

// SignatureHeader is the header the signature endpoints read (Encompass style).
const SignatureHeader = "Elli-Signature"

// FileName is partner i's file name under partners/.
func FileName(i int) string { return fmt.Sprintf("p%05d.yaml", i) }

// Partner is partner i's file: 5 sites × 5 sync signature endpoints running bench-sync,
// each with its own key.
func Partner(i int) string {
	var b strings.Builder
	id := fmt.Sprintf("p%05d", i)
	fmt.Fprintf(&b, "id: %s\nname: Partner %d\nsettings: {region: r%d}\nsites:\n", id, i, i%7)
	for s := range 5 {
		fmt.Fprintf(&b, "  - id: s%d\n    name: Site %d\n    endpoints:\n", s, s)
		for e := range 5 {
			fmt.Fprintf(&b, "      - name: e%d\n        saga: bench-sync\n        mode: sync\n        security: {method: signature, header: %s, secrets: [{value: k-%s-s%d-e%d}]}\n",
				e, SignatureHeader, id, s, e)
		}
	}
	return b.String()
}
