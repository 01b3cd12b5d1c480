// acmesolver is cert-manager's HTTP-01 solver (its pkg/issuer/acme/http/solver
// server) behind the flags cert-manager's solver Pods are started with, so the
// local cluster's process kubelet can run the Pods cert-manager creates. Our
// own main: cert-manager's cmd/acmesolver is a module the Go proxy does not
// serve.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/cert-manager/cert-manager/pkg/issuer/acme/http/solver"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
)

func main() {
	s := &solver.HTTP01Solver{}
	fs := pflag.NewFlagSet("acmesolver", pflag.ContinueOnError)
	fs.IntVar(&s.ListenPort, "listen-port", 8089, "the port to listen on")
	fs.StringVar(&s.Domain, "domain", "", "the domain name to verify")
	fs.StringVar(&s.Token, "token", "", "the challenge token")
	fs.StringVar(&s.Key, "key", "", "the key authorization to answer with")
	if err := fs.Parse(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "acmesolver: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(shutdown)
	}()
	if err := s.Listen(logf.Log); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintf(os.Stderr, "acmesolver: %v\n", err)
		os.Exit(1)
	}
}
