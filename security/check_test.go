package security

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"unsafe"
)

func reasonOf(err error) Reason {
	var f *Failure
	if errors.As(err, &f) {
		return f.Reason
	}
	return ""
}

// A Check compiled against a shared Template, and then moved onto packed secrets, must
// accept and refuse exactly what New's verifier does.
func TestCheckSharedAndPackedVerifiesLikeNew(t *testing.T) {
	for _, tc := range verifyCases() {
		t.Run(tc.name, func(t *testing.T) {
			// A first Check whose config differs only in its secrets donates the Template.
			other := tc.cfg
			other.Password, other.Token, other.TokenSecret = NewSecret("other-1"), NewSecret("other-2"), NewSecret("other-3")
			other.Secrets, other.Keys, other.Tokens = nil, nil, nil
			if len(tc.cfg.Secrets) > 0 {
				other.Secrets = []Secret{NewSecret("whsec_" + "b3RoZXI=")}
			}
			if len(tc.cfg.Keys) > 0 {
				other.Keys = secrets("other-key")
			}
			if len(tc.cfg.Tokens) > 0 {
				other.Tokens = secrets("other-token")
			}
			donor, err := Compile(other, nil)
			if err != nil {
				t.Fatalf("Compile(other): %v", err)
			}
			c, err := Compile(tc.cfg, donor.Template())
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if c.Template() != donor.Template() {
				t.Error("a config differing only in secrets does not share the template")
			}
			want := tc.want
			if got := reasonOf(c.Verify(&tc.req)); got != want {
				t.Fatalf("shared Check: reason %q, want %q", got, want)
			}
			packed := slices.Clone(append(slices.Clone(donor.Secrets()), c.Secrets()...))
			PackSecrets(packed)
			n := len(donor.Secrets())
			if !c.MoveSecrets(packed[n:]) || !donor.MoveSecrets(packed[:n:n]) {
				t.Fatal("MoveSecrets refused the packed copies")
			}
			if got := reasonOf(c.Verify(&tc.req)); got != want {
				t.Fatalf("packed Check: reason %q, want %q", got, want)
			}
			var v Verifier = &c
			if v.Method() != tc.cfg.Method {
				t.Errorf("Method() = %q", v.Method())
			}
		})
	}
}

func TestCompileDoesNotShareADifferentTemplate(t *testing.T) {
	a, err := Compile(signatureConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Compile(hexSignatureConfig(), a.Template())
	if err != nil {
		t.Fatal(err)
	}
	if b.Template() == a.Template() {
		t.Fatal("a different config reused the template")
	}
	if b.Config().Encoding != "hex" {
		t.Fatalf("Config().Encoding = %q", b.Config().Encoding)
	}
	c, err := Compile(withAllowIPs(signatureConfig(), "10.0.0.0/8"), a.Template())
	if err != nil {
		t.Fatal(err)
	}
	if c.Template() == a.Template() {
		t.Fatal("a config with an allow list reused one without")
	}
}

// Compile's errors are New's.
func TestCompileRejectsLikeNew(t *testing.T) {
	bad := Config{Method: Signature, Encoding: "b64"}
	_, e1 := New(bad)
	c, e2 := Compile(bad, nil)
	if e1 == nil || e2 == nil || e1.Error() != e2.Error() {
		t.Fatalf("New: %v; Compile: %v", e1, e2)
	}
	if c.Valid() || c.Method() != "" || c.Config().Method != "" {
		t.Fatal("a failed Compile returned a usable Check")
	}
	if f := reasonOf(c.Verify(&Request{})); f != ReasonMissing {
		t.Fatalf("zero Check: reason %q, want missing", f)
	}
}

func TestMoveSecretsRefusesOtherValues(t *testing.T) {
	c, err := Compile(signatureConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	orig := c.Secrets()
	if c.MoveSecrets(secrets("not-the-key")) || c.MoveSecrets(nil) || c.MoveSecrets(append(slices.Clone(orig), NewSecret("x"))) {
		t.Fatal("MoveSecrets took different secrets")
	}
	if len(c.Secrets()) != len(orig) || &c.Secrets()[0] != &orig[0] {
		t.Fatal("a refused MoveSecrets changed the secrets")
	}
}

// The caller's Config slices are its own: changing them afterwards changes nothing.
func TestCheckKeepsItsOwnSecretList(t *testing.T) {
	cfg := signatureConfig()
	c, err := Compile(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Secrets[0] = NewSecret("replaced")
	req := Request{Header: hdr("Pushback-Signature", b64mac(sigKey1, body)), Body: body}
	if err := c.Verify(&req); err != nil {
		t.Fatalf("Verify after the caller reused its slice: %v", err)
	}
}

func TestPackSecretsCopiesIntoOneArray(t *testing.T) {
	list := []Secret{NewSecret("abc"), {}, NewSecret("de")}
	src := list[0].b
	PackSecrets(list)
	if string(list[0].b) != "abc" || !list[1].IsZero() || list[1].b != nil || string(list[2].b) != "de" {
		t.Fatalf("packed = %q %q %q", list[0].b, list[1].b, list[2].b)
	}
	if &list[0].b[0] == &src[0] {
		t.Fatal("PackSecrets did not copy")
	}
	if cap(list[0].b) != 3 || uintptr(unsafe.Pointer(&list[0].b[2]))+1 != uintptr(unsafe.Pointer(&list[2].b[0])) {
		t.Fatal("packed secrets are not one array with capped slices")
	}
	if !bytes.Equal(list[2].Reveal(), []byte("de")) {
		t.Fatal("Reveal")
	}
}

func TestCheckVerifyAllocatesNothingForBearer(t *testing.T) {
	c, err := Compile(bearerConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	req := Request{Header: hdr("Authorization", "Bearer "+bearer1)}
	if n := testing.AllocsPerRun(100, func() {
		if err := c.Verify(&req); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("Verify allocates %v times", n)
	}
}

// The gateway builds a Request per pushback on its stack; verifying must not move it to the
// heap (through the scheme interface it would, were it passed by pointer).
func TestVerifyDoesNotMoveTheRequestToTheHeap(t *testing.T) {
	c, err := Compile(bearerConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := hdr("Authorization", "Bearer "+bearer1)
	if n := testing.AllocsPerRun(100, func() {
		r := Request{Header: h, Body: body, Now: testNow}
		if err := c.Verify(&r); err != nil {
			t.Fatal(err)
		}
		if id, _ := c.MessageID(&r); id != "" {
			t.Fatal(id)
		}
	}); n != 0 {
		t.Fatalf("Verify and MessageID allocate %v times", n)
	}
}

// Redacting a recorded request asks the method where its credentials are; that costs no
// allocation beyond the copy of the headers.
func TestCheckConfigAllocatesNothing(t *testing.T) {
	c, err := Compile(Config{Preset: "stripe", Secrets: secrets(sigKey1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		cfg := c.Config()
		if h := cfg.credentialHeaders(); h[0] != "Stripe-Signature" {
			t.Fatal(h)
		}
	}); n != 0 {
		t.Fatalf("Config and its credentials allocate %v times", n)
	}
}
