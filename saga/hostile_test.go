package saga

import (
	"strings"
	"testing"
	"time"

	"github.com/pushbackd/pushbackd/internal/hostileyaml"
)

// The saga loader is what the admin API and file loads call: every hostile document is
// refused with one positioned error naming the limit it breaks, and the thousand take
// seconds, not the process. (yamlconf's own test bounds the memory of the same documents.)
func TestSagaParseRefusesAThousandHostileDocuments(t *testing.T) {
	began := time.Now()
	for _, doc := range hostileyaml.Corpus() {
		src := doc.Src()
		s, errs := Parse("sagas/hostile.yaml", src)
		if s != nil || len(errs) != 1 {
			t.Errorf("%s: got saga %v and errors %v, want one refusal", doc.Name, s != nil, errs)
			continue
		}
		e := errs[0]
		if e.File != "sagas/hostile.yaml" || e.Line < 1 || e.Column < 1 || e.Line > strings.Count(string(src), "\n")+1 || !strings.Contains(e.Message, doc.Want) {
			t.Errorf("%s: refusal %v, want one inside the file naming %q", doc.Name, e, doc.Want)
		}
	}
	if elapsed := time.Since(began); elapsed > time.Minute {
		t.Errorf("took %v", elapsed)
	} else {
		t.Logf("1000 documents refused in %v", elapsed.Round(time.Millisecond))
	}
}
