package security

// HeaderNames are the names of the headers cfg's method reads, spelled as the configuration
// (or its preset, as the provider documents them) spells them. http.Header keeps names in
// canonical form, which turns Encompass's "Elli-SubscriptionId" into "Elli-Subscriptionid";
// a tool that prints headers for people to read or copy shows these spellings instead.
func HeaderNames(cfg Config) []string {
	var p problems
	cfg = withPreset(cfg, &p)
	var out []string
	for _, name := range []string{cfg.Header, cfg.TimestampHeader, cfg.KeyIDHeader, cfg.TokenHeader, cfg.SecretHeader} {
		if name != "" {
			out = append(out, name)
		}
	}
	return out
}
