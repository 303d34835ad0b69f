package security

import "strings"

// preset is a named shorthand over a method: the settings a provider's webhooks need,
// so that an endpoint names the provider and its secrets. Keys the endpoint sets itself
// win over the preset's, so every part stays overridable.
type preset struct {
	name     string
	method   Method
	settings Config // non-secret keys of method only
}

// presetTable lists the presets in the order the documentation gives them. It is never
// modified.
var presetTable = [...]preset{
	// ICE Encompass: Elli-Signature = base64(HMAC-SHA256(subscription key, body)), and
	// Elli-SubscriptionId names the subscription whose key signed it.
	{"encompass", Signature, Config{Header: "Elli-Signature", Encoding: "base64", KeyIDHeader: "Elli-SubscriptionId"}},
	// Snapdocs documents the headers and that the HMAC covers the timestamp, but not the
	// exact text signed: {timestamp}.{body} is an assumption, and signed overrides it.
	{"snapdocs", Signature, Config{Header: "X-Authorization-Signature", Encoding: "base64",
		TimestampHeader: "X-Authorization-Timestamp", TimestampFormat: "rfc3339", Signed: "{timestamp}.{body}"}},
	{"github", Signature, Config{Header: "X-Hub-Signature-256", Encoding: "hex", Prefix: "sha256="}},
	// Stripe signs "{t}.{body}" with the whole whsec_... secret as the key (it is not
	// decoded), in hex; several v1 parts during a secret's rollover.
	{"stripe", Signature, Config{Header: "Stripe-Signature", Encoding: "hex", TimestampPart: "t", SignaturePart: "v1", Signed: "{timestamp}.{body}"}},
	{"slack", Signature, Config{Header: "X-Slack-Signature", Encoding: "hex", Prefix: "v0=",
		TimestampHeader: "X-Slack-Request-Timestamp", Signed: "v0:{timestamp}:{body}"}},
	{"shopify", Signature, Config{Header: "X-Shopify-Hmac-Sha256", Encoding: "base64"}},
	{"standard_webhooks", StandardWebhooks, Config{}},
}

// Presets returns every preset's name, in the order the documentation lists them.
func Presets() []string {
	out := make([]string, len(presetTable))
	for i, p := range presetTable {
		out[i] = p.name
	}
	return out
}

// PresetMethod is the method preset name stands for, and whether it exists.
func PresetMethod(name string) (Method, bool) {
	if p := findPreset(name); p != nil {
		return p.method, true
	}
	return "", false
}

func findPreset(name string) *preset {
	for i := range presetTable {
		if presetTable[i].name == name {
			return &presetTable[i]
		}
	}
	return nil
}

// withPreset returns cfg with its preset's settings in the keys it leaves empty.
func withPreset(cfg Config, p *problems) Config {
	if cfg.Preset == "" {
		return cfg
	}
	ps := findPreset(cfg.Preset)
	if ps == nil {
		p.at("preset", "unknown preset %q (want one of %s)", cfg.Preset, strings.Join(Presets(), ", "))
		return cfg
	}
	switch cfg.Method {
	case "":
		cfg.Method = ps.method
	case ps.method:
	default:
		p.at("method", "preset %s is method %s, not %s: leave method out", ps.name, ps.method, cfg.Method)
		return cfg
	}
	for _, k := range lookup(ps.method).keys {
		if !k.isSet(&cfg) && k.isSet(&ps.settings) {
			k.copyTo(&cfg, &ps.settings)
		}
	}
	return cfg
}
