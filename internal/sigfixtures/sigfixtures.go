// Package sigfixtures reads testdata/signatures: request bodies and the signatures openssl
// computed for them (generate.sh writes expected.tsv). Tests of several packages check our
// HMACs against these, so they share one reader.
package sigfixtures

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Fixture is one row of expected.tsv.
type Fixture struct {
	File      string // body file in the fixture directory (one-mib.bin is rebuilt, see OneMiB)
	SHA256    string // of the body, so a body difference shows apart from a signature one
	Kind      string // base64 | hex | hex-prefixed | standard_webhooks
	Key       string // HMAC key, or the whsec_ secret
	MsgID     string // standard_webhooks only
	Timestamp string // standard_webhooks only
	Value     string // the header value a sender would send
}

// Load reads dir/expected.tsv.
func Load(dir string) ([]Fixture, error) {
	f, err := os.Open(filepath.Join(dir, "expected.tsv"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Fixture
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		c := strings.Split(line, "\t")
		if len(c) != 7 {
			return nil, fmt.Errorf("expected.tsv:%d: %d columns, want 7", n, len(c))
		}
		out = append(out, Fixture{c[0], c[1], c[2], c[3], c[4], c[5], c[6]})
	}
	return out, sc.Err()
}

// Body returns a fixture body: the file, or for one-mib.bin the rebuilt megabyte.
func Body(dir, name string) ([]byte, error) {
	if name == "one-mib.bin" {
		return OneMiB(), nil
	}
	return os.ReadFile(filepath.Join(dir, name))
}

// OneMiB rebuilds one-mib.bin exactly as generate.sh does: AES-128-CTR with an all-zero key
// and IV over 1 MiB of zero bytes. Deterministic, every byte value, and not committed.
func OneMiB() []byte {
	block, err := aes.NewCipher(make([]byte, 16))
	if err != nil {
		panic(err) // a 16-byte key is always valid
	}
	b := make([]byte, 1<<20)
	cipher.NewCTR(block, make([]byte, 16)).XORKeyStream(b, b)
	return b
}
