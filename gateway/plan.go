package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pushbackd/pushbackd/config"
	"github.com/pushbackd/pushbackd/saga"
)

// Sample is a request to plan with (DESIGN §8); every key is optional. Body is a JSON value,
// or a JSON string taken as the raw body and parsed per the Content-Type header.
type Sample struct {
	Partner  string            `json:"partner"`
	Site     string            `json:"site"`
	Endpoint string            `json:"endpoint"`
	Method   string            `json:"method"`
	Headers  map[string]string `json:"headers"`
	Query    map[string]string `json:"query"`
	Body     json.RawMessage   `json:"body"`
	// Outputs are what http and kv steps are taken to have returned, by step name, so
	// the steps after them render as in a run (saga.PlanWithOutputs). Plan only.
	Outputs map[string]any `json:"outputs"`
}

// PlanSample shows what sagaName would do for the sample request, calling nothing. The CLI
// `plan` and the admin API share it, so both build the request as the gateway would.
func PlanSample(cfg *config.Config, sagaName string, sampleJSON []byte) (*saga.PlanResult, error) {
	s, ok := cfg.Sagas[sagaName]
	if !ok {
		return nil, fmt.Errorf("no saga %q in sagas_dir", sagaName)
	}
	return PlanSagaSample(cfg, s, sampleJSON)
}

// PlanSagaSample is PlanSample for a saga that need not be configured: a draft.
func PlanSagaSample(cfg *config.Config, s *saga.Saga, sampleJSON []byte) (*saga.PlanResult, error) {
	var sample Sample
	if len(bytes.TrimSpace(sampleJSON)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(sampleJSON))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sample); err != nil {
			return nil, fmt.Errorf("sample request: %s (keys: partner, site, endpoint, method, headers, query, body, outputs)", jsonMessage(err, sampleJSON))
		}
	}
	inv, err := sampleInvocation(cfg, s, &sample)
	if err != nil {
		return nil, err
	}
	return saga.PlanWithOutputs(s, inv, sample.Outputs)
}

func sampleInvocation(cfg *config.Config, s *saga.Saga, sample *Sample) (*saga.Invocation, error) {
	route, err := sampleRoute(cfg, s.Name, sample)
	if err != nil {
		return nil, err
	}
	header := http.Header{}
	for k, v := range sample.Headers {
		header.Set(k, v)
	}
	var raw []byte
	var text string
	if err := json.Unmarshal(sample.Body, &text); err == nil {
		raw = []byte(text)
	} else if len(sample.Body) > 0 {
		raw = sample.Body
		if header.Get("Content-Type") == "" {
			header.Set("Content-Type", "application/json")
		}
	}
	body, err := parseBody(header.Get("Content-Type"), raw)
	if err != nil {
		return nil, fmt.Errorf("sample body: %w", err)
	}
	query := url.Values{}
	for k, v := range sample.Query {
		query.Set(k, v)
	}
	method := sample.Method
	if method == "" {
		method = http.MethodPost
	}
	path := "/pushback/" + route.Partner.ID
	if route.Site != nil {
		path += "/" + route.Site.ID
	}
	endpoint := route.Endpoint
	if endpoint == nil { // the saga's endpoint need not exist for a plan
		endpoint = &config.Endpoint{Name: sample.Endpoint}
	}
	route.Endpoint = endpoint
	inv := NewInvocation(route, s, "plan", saga.Request{Method: strings.ToUpper(method), Path: path + "/" + sample.Endpoint, Headers: header, Query: query,
		RemoteIP: "127.0.0.1", ContentType: header.Get("Content-Type"), Raw: raw, Body: body, ReceivedAt: time.Now()})
	return inv, nil
}

// sampleRoute finds the partner (and site) whose settings and secrets the plan uses: the
// sample's, or the first partner with an endpoint running the saga.
func sampleRoute(cfg *config.Config, sagaName string, sample *Sample) (config.Route, error) {
	if sample.Partner == "" {
		for _, p := range cfg.Partners {
			for _, e := range p.Endpoints {
				if e.Saga == sagaName {
					sample.Partner, sample.Endpoint = p.ID, e.Name
					return config.Route{Partner: p, Endpoint: e}, nil
				}
			}
			for _, site := range p.Sites {
				for _, e := range site.Endpoints {
					if e.Saga == sagaName {
						sample.Partner, sample.Site, sample.Endpoint = p.ID, site.ID, e.Name
						return config.Route{Partner: p, Site: site, Endpoint: e}, nil
					}
				}
			}
		}
		return config.Route{}, fmt.Errorf("no partner uses saga %q; name one in the sample request (\"partner\": ...)", sagaName)
	}
	p := cfg.Partner(sample.Partner)
	if p == nil {
		return config.Route{}, fmt.Errorf("sample request: no partner %q", sample.Partner)
	}
	route := config.Route{Partner: p}
	if sample.Site != "" {
		if route.Site = p.Site(sample.Site); route.Site == nil {
			return config.Route{}, fmt.Errorf("sample request: partner %q has no site %q", sample.Partner, sample.Site)
		}
	}
	if sample.Endpoint != "" {
		if r, ok := cfg.Lookup(sample.Partner, sample.Site, sample.Endpoint); ok {
			route.Endpoint = r.Endpoint
		}
	}
	return route, nil
}
