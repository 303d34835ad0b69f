package app

import (
	"crypto/tls"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pushbackd/pushbackd/config"
)

// certReloader serves a certificate pair and re-reads it when either file changes, so a
// renewed certificate (certbot, cert-manager) takes effect without a restart. It looks at
// the files at most once a second, on handshakes; a pair that fails to load is logged and
// the previous one keeps serving.
type certReloader struct {
	files config.TLS
	log   *zap.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time // modification times of cert and key when loaded
	checked time.Time
}

func newCertReloader(files config.TLS, log *zap.Logger) (*certReloader, error) {
	r := &certReloader{files: files, log: log}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) modTimes() [2]time.Time {
	var out [2]time.Time
	for i, f := range []string{r.files.CertFile, r.files.KeyFile} {
		if st, err := os.Stat(f); err == nil {
			out[i] = st.ModTime()
		}
	}
	return out
}

func (r *certReloader) load() error {
	stamp := r.modTimes()
	cert, err := tls.LoadX509KeyPair(r.files.CertFile, r.files.KeyFile)
	if err != nil {
		return err
	}
	r.cert, r.stamp = &cert, stamp
	return nil
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= time.Second {
		r.checked = now
		if r.modTimes() != r.stamp {
			if err := r.load(); err != nil {
				r.log.Error("cannot load the changed TLS certificate; the previous one keeps serving", zap.String("cert_file", r.files.CertFile), zap.Error(err))
			} else {
				r.log.Info("TLS certificate reloaded", zap.String("cert_file", r.files.CertFile))
			}
		}
	}
	return r.cert, nil
}

// tlsConfig is the listeners' TLS: 1.2 or later (senders such as Encompass require HTTPS;
// older versions have known weaknesses), the certificate from the reloader.
func tlsConfig(files *config.TLS, log *zap.Logger) (*tls.Config, error) {
	if files == nil {
		return nil, nil
	}
	r, err := newCertReloader(*files, log)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.getCertificate}, nil
}
