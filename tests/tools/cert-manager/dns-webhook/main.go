// dns-webhook is a DNS-01 webhook solver for certwright's tests, built as
// third-party solvers are: cert-manager's pkg/acme/webhook serves it as an
// aggregated API (group from $GROUP_NAME, solver "bind"), and the Kubernetes
// API server proxies ChallengePayloads to it. It writes the TXT records
// with RFC 2136 updates (cert-manager's rfc2136 client) to the nameserver
// its config names, signed with a TSIG key it reads from a Secret in the
// request's resource namespace.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	whapi "github.com/cert-manager/cert-manager/pkg/acme/webhook/apis/acme/v1alpha1"
	"github.com/cert-manager/cert-manager/pkg/acme/webhook/cmd"
	"github.com/cert-manager/cert-manager/pkg/issuer/acme/dns/rfc2136"
)

// config is the solver's `config` on the Issuer.
type config struct {
	// Nameserver is host:port of the authoritative server.
	Nameserver string `json:"nameserver"`
	// TSIGKeyName names the key; its secret (base64, as BIND writes it) is
	// entry TSIGSecretKey of the Secret TSIGSecretName.
	TSIGKeyName    string `json:"tsigKeyName"`
	TSIGAlgorithm  string `json:"tsigAlgorithm"`
	TSIGSecretName string `json:"tsigSecretName"`
	TSIGSecretKey  string `json:"tsigSecretKey"`
}

type solver struct {
	client kubernetes.Interface
}

func (s *solver) Name() string { return "bind" }

func (s *solver) Initialize(cfg *rest.Config, _ <-chan struct{}) error {
	client, err := kubernetes.NewForConfig(cfg)
	s.client = client
	return err
}

func (s *solver) Present(ch *whapi.ChallengeRequest) error {
	p, err := s.provider(ch)
	if err != nil {
		return err
	}
	return p.Present(ch.DNSName, ch.ResolvedFQDN, ch.ResolvedZone, ch.Key)
}

func (s *solver) CleanUp(ch *whapi.ChallengeRequest) error {
	p, err := s.provider(ch)
	if err != nil {
		return err
	}
	return p.CleanUp(ch.DNSName, ch.ResolvedFQDN, ch.ResolvedZone, ch.Key)
}

func (s *solver) provider(ch *whapi.ChallengeRequest) (*rfc2136.DNSProvider, error) {
	if ch.ResolvedFQDN == "" || ch.ResolvedZone == "" {
		return nil, fmt.Errorf("the request names no resolvedFQDN or resolvedZone")
	}
	var c config
	if ch.Config == nil {
		return nil, fmt.Errorf("the solver has no config")
	}
	if err := json.Unmarshal(ch.Config.Raw, &c); err != nil {
		return nil, fmt.Errorf("reading the solver config: %v", err)
	}
	ns := ch.ResourceNamespace
	secret, err := s.client.CoreV1().Secrets(ns).Get(context.TODO(), c.TSIGSecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("bind webhook: the TSIG Secret %s/%s does not exist", ns, c.TSIGSecretName)
	}
	if err != nil {
		return nil, err
	}
	tsig, ok := secret.Data[c.TSIGSecretKey]
	if !ok {
		return nil, fmt.Errorf("bind webhook: the Secret %s/%s has no entry %q", ns, c.TSIGSecretName, c.TSIGSecretKey)
	}
	return rfc2136.NewDNSProviderCredentials(c.Nameserver, c.TSIGAlgorithm, c.TSIGKeyName, string(tsig))
}

func main() {
	group := os.Getenv("GROUP_NAME")
	if group == "" {
		fmt.Fprintln(os.Stderr, "dns-webhook: set GROUP_NAME to the API group to serve")
		os.Exit(2)
	}
	cmd.RunWebhookServer(group, &solver{})
}
