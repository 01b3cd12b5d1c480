// keystore-read opens a keystore with the libraries cert-manager writes them
// with (go-pkcs12, keystore-go) and prints what it holds as JSON, so tests can
// compare it with what certwright put in. Our own code.
//
//	keystore-read p12|p12-trust|jks|jks-trust FILE PASSWORD [ALIAS]
package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"sort"

	jks "github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"
)

type contents struct {
	// PKCS#8 DER of the private key, when there is one.
	Key []byte `json:"key,omitempty"`
	// The DER of the key's chain, leaf first.
	Chain [][]byte `json:"chain,omitempty"`
	// The DER of the other (CA or trusted) certificates.
	Trusted [][]byte `json:"trusted,omitempty"`
	// JKS aliases, sorted.
	Aliases []string `json:"aliases,omitempty"`
}

func main() {
	if len(os.Args) < 4 {
		fail(fmt.Errorf("usage: keystore-read p12|p12-trust|jks|jks-trust FILE PASSWORD [ALIAS]"))
	}
	kind, file, password := os.Args[1], os.Args[2], os.Args[3]
	data, err := os.ReadFile(file)
	if err != nil {
		fail(err)
	}
	var out contents
	switch kind {
	case "p12":
		key, leaf, cas, err := pkcs12.DecodeChain(data, password)
		if err != nil {
			fail(err)
		}
		if out.Key, err = x509.MarshalPKCS8PrivateKey(key); err != nil {
			fail(err)
		}
		out.Chain = [][]byte{leaf.Raw}
		for _, ca := range cas {
			out.Trusted = append(out.Trusted, ca.Raw)
		}
	case "p12-trust":
		certs, err := pkcs12.DecodeTrustStore(data, password)
		if err != nil {
			fail(err)
		}
		for _, c := range certs {
			out.Trusted = append(out.Trusted, c.Raw)
		}
	case "jks", "jks-trust":
		ks := jks.New()
		if err := ks.Load(bytes.NewReader(data), []byte(password)); err != nil {
			fail(err)
		}
		out.Aliases = ks.Aliases()
		sort.Strings(out.Aliases)
		for _, alias := range out.Aliases {
			if ks.IsPrivateKeyEntry(alias) {
				entry, err := ks.GetPrivateKeyEntry(alias, []byte(password))
				if err != nil {
					fail(err)
				}
				out.Key = entry.PrivateKey
				for _, c := range entry.CertificateChain {
					out.Chain = append(out.Chain, c.Content)
				}
			} else if ks.IsTrustedCertificateEntry(alias) {
				entry, err := ks.GetTrustedCertificateEntry(alias)
				if err != nil {
					fail(err)
				}
				out.Trusted = append(out.Trusted, entry.Certificate.Content)
			}
		}
	default:
		fail(fmt.Errorf("unknown kind %q", kind))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "keystore-read:", err)
	os.Exit(1)
}
