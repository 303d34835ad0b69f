package gateway

import (
	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/saga"
)

// SampleInvocation builds the Invocation the gateway would make of sample for s, under the
// partner (and site) the sample names, or the first one whose endpoint runs s. `pushbackd
// test` runs saga test cases on it, so a case sees the settings, secrets and egress lists
// a real request would.
func SampleInvocation(cfg *config.Config, s *saga.Saga, sample *Sample) (*saga.Invocation, error) {
	return sampleInvocation(cfg, s, sample)
}
