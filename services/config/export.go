package config

import (
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Export defaults and bounds.
const (
	// DefaultExportListen is where the export listens when listen is unset.
	DefaultExportListen = "0.0.0.0:9443"
	// MinExportSecretLength is the shortest secret key the export accepts:
	// it guards a listener on the network.
	MinExportSecretLength = 16
)

// Export turns on the read-only S3 export of the store (services/export):
// an HTTPS listener that serves snapshots to S3 clients that sign their
// requests with AccessKey and SecretKey. Without an export block the
// appliance listens on no port.
type Export struct {
	Listen    string // host:port; DefaultExportListen when unset
	AccessKey string
	SecretKey Secret
	// CertFile and KeyFile are the TLS certificate (chain) and its key,
	// both or neither (then a self-signed certificate is generated at
	// start); CertPEM and KeyPEM are their contents, read and checked at
	// load. The key is a Secret: it never prints.
	CertFile, KeyFile string
	CertPEM           []byte
	KeyPEM            Secret
	// Sources limits the export to these sources; nil exports them all.
	Sources []string
}

type exportHCL struct {
	Listen    *string   `hcl:"listen,optional"`
	AccessKey string    `hcl:"access_key"`
	SecretKey string    `hcl:"secret_key"`
	CertFile  *string   `hcl:"cert_file,optional"`
	KeyFile   *string   `hcl:"key_file,optional"`
	Sources   *[]string `hcl:"sources,optional"`
	Body      hcl.Body  `hcl:",body"`
}

// export checks the export block. Its sources need not be declared in the
// file: the store keeps the snapshots of sources no longer pulled, and
// those may be exported too.
func (v *validator) export(r *exportHCL) *Export {
	e := &Export{Listen: DefaultExportListen, AccessKey: r.AccessKey, SecretKey: Secret(r.SecretKey)}
	if r.Listen != nil {
		e.Listen = *r.Listen
		if err := checkListen(e.Listen); err != nil {
			v.errf(r.Body, "listen", `Invalid value for "listen"`, "export: %v", err)
		}
	}
	if err := CheckExportCredential(r.AccessKey, ""); err != nil {
		v.errf(r.Body, "access_key", `Invalid value for "access_key"`, "export: %v", err)
	}
	if len(r.SecretKey) < MinExportSecretLength {
		// Never echo the secret, not even in an error.
		v.errf(r.Body, "secret_key", `Invalid value for "secret_key"`,
			"export: secret_key is %d characters; want at least %d (the export is reachable over the network)", len(r.SecretKey), MinExportSecretLength)
	}
	if r.Sources != nil && len(*r.Sources) == 0 {
		v.errf(r.Body, "sources", `Invalid value for "sources"`, "export: sources is empty, which would export nothing; remove it to export every source")
	}
	if r.Sources != nil {
		e.Sources = []string{}
		seen := map[string]bool{}
		for _, name := range *r.Sources {
			switch {
			case !sourceNameRE.MatchString(name):
				v.errf(r.Body, "sources", `Invalid value for "sources"`,
					"export: source name %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
			case seen[name]:
				v.errf(r.Body, "sources", `Invalid value for "sources"`, "export: source %q is listed twice", name)
			default:
				seen[name] = true
				e.Sources = append(e.Sources, name)
			}
		}
	}
	cert, key := "", ""
	if r.CertFile != nil {
		cert = *r.CertFile
	}
	if r.KeyFile != nil {
		key = *r.KeyFile
	}
	switch {
	case cert == "" && key == "":
	case cert == "":
		v.errf(r.Body, "key_file", `Invalid value for "key_file"`, "export: key_file needs cert_file too")
	case key == "":
		v.errf(r.Body, "cert_file", `Invalid value for "cert_file"`, "export: cert_file needs key_file too")
	default:
		e.CertFile, e.KeyFile = v.absPath(cert), v.absPath(key)
		certPEM, err := readCABundle(e.CertFile)
		if err != nil {
			v.errf(r.Body, "cert_file", `Invalid value for "cert_file"`, "export: %v", err)
			break
		}
		keyPEM, err := readCABundle(e.KeyFile)
		if err != nil {
			v.errf(r.Body, "key_file", `Invalid value for "key_file"`, "export: %v", err)
			break
		}
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			v.errf(r.Body, "cert_file", `Invalid value for "cert_file"`,
				"export: %s and %s are not a TLS certificate and its key: %v", e.CertFile, e.KeyFile, err)
			break
		}
		e.CertPEM, e.KeyPEM = certPEM, Secret(keyPEM)
	}
	return e
}

// absPath makes a path from the file absolute, relative to the file's
// directory.
func (v *validator) absPath(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(v.dir, p)
}

// checkListen accepts host:port or :port, with a port from 1 to 65535.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen %q: want host:port, e.g. %s", addr, DefaultExportListen)
	}
	if strings.ContainsAny(host, "/?#@ \t\r\n") {
		return fmt.Errorf("listen %q: host %q is not a host name or address", addr, host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("listen %q: port %q: want 1 to 65535", addr, port)
	}
	return nil
}

// CheckExportCredential checks an export access key (1 to 128 printable
// ASCII characters, no space and no '/', which would break the SigV4
// credential scope) and, unless secret is empty, the secret's length. Its
// errors never include the secret.
func CheckExportCredential(accessKey, secret string) error {
	if accessKey == "" || len(accessKey) > 128 {
		return fmt.Errorf("access_key is %d characters; want 1 to 128", len(accessKey))
	}
	for i := 0; i < len(accessKey); i++ {
		if c := accessKey[i]; c <= ' ' || c >= 0x7f || c == '/' {
			return fmt.Errorf("access_key %q: want printable ASCII without spaces or '/'", accessKey)
		}
	}
	if secret != "" && len(secret) < MinExportSecretLength {
		return fmt.Errorf("secret_key is %d characters; want at least %d", len(secret), MinExportSecretLength)
	}
	return nil
}
