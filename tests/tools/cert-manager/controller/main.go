// controller runs cert-manager's own controllers, from its published module,
// so that certwright's tests and benchmark can run cert-manager itself in the
// local cluster: migrations from it are tested for real and the two are
// compared in one run. cert-manager's cmd/controller is a module the Go proxy
// does not serve; this is our own main over the packages it uses. Every
// setting is cert-manager's default (its config API's defaulting), except
// what the flags below change; the flags are named as cert-manager's, so its
// chart's Deployment runs this binary unchanged.
package main

import (
	"context"
	"errors"
	goflag "flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	config "github.com/cert-manager/cert-manager/internal/apis/config/controller"
	"github.com/cert-manager/cert-manager/internal/apis/config/shared"
	"github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/healthz"
	dnsutil "github.com/cert-manager/cert-manager/pkg/issuer/acme/dns/util"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"

	// The controllers of cert-manager's ACME path; each registers itself.
	_ "github.com/cert-manager/cert-manager/pkg/controller/acmechallenges"
	_ "github.com/cert-manager/cert-manager/pkg/controller/acmeorders"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/ingresses"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/acme"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/metrics"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	// The ACME issuer type. (The Venafi one cannot be built here: the Go
	// proxy does not serve github.com/Venafi/vcert.)
	_ "github.com/cert-manager/cert-manager/pkg/issuer/acme"
)

func main() {
	cfg := defaultConfiguration()
	fs := pflag.NewFlagSet("cert-manager-controller", pflag.ContinueOnError)
	verbosity := fs.Int("v", 2, "log verbosity (klog)")
	fs.StringVar(&cfg.KubeConfig, "kubeconfig", cfg.KubeConfig, "kubeconfig file (in a Pod: none, the in-cluster config)")
	fs.StringVar(&cfg.Namespace, "namespace", cfg.Namespace, "the only namespace to watch (all when empty)")
	fs.StringVar(&cfg.ClusterResourceNamespace, "cluster-resource-namespace", cfg.ClusterResourceNamespace, "where ClusterIssuers' Secrets are")
	fs.BoolVar(&cfg.LeaderElectionConfig.Enabled, "leader-elect", cfg.LeaderElectionConfig.Enabled, "elect a leader on a Lease")
	fs.StringVar(&cfg.LeaderElectionConfig.Namespace, "leader-election-namespace", cfg.LeaderElectionConfig.Namespace, "the Lease's namespace")
	fs.DurationVar(&cfg.LeaderElectionConfig.LeaseDuration, "leader-election-lease-duration", cfg.LeaderElectionConfig.LeaseDuration, "")
	fs.DurationVar(&cfg.LeaderElectionConfig.RenewDeadline, "leader-election-renew-deadline", cfg.LeaderElectionConfig.RenewDeadline, "")
	fs.DurationVar(&cfg.LeaderElectionConfig.RetryPeriod, "leader-election-retry-period", cfg.LeaderElectionConfig.RetryPeriod, "")
	fs.StringSliceVar(&cfg.Controllers, "controllers", cfg.Controllers, "controllers to run: * for the defaults, -name to leave one out")
	fs.StringVar(&cfg.ACMEHTTP01Config.SolverImage, "acme-http01-solver-image", cfg.ACMEHTTP01Config.SolverImage, "the HTTP-01 solver Pods' image")
	fs.StringSliceVar(&cfg.ACMEHTTP01Config.SolverNameservers, "acme-http01-solver-nameservers", cfg.ACMEHTTP01Config.SolverNameservers, "nameservers (host:port) of the HTTP-01 self-check")
	fs.StringToStringVar(&cfg.ACMEHTTP01Config.SolverExtraLabels, "acme-http01-solver-extra-labels", cfg.ACMEHTTP01Config.SolverExtraLabels, "")
	fs.StringVar(&cfg.ACMEHTTP01Config.SolverRuntimeClassName, "acme-http01-solver-runtime-class-name", cfg.ACMEHTTP01Config.SolverRuntimeClassName, "")
	fs.StringSliceVar(&cfg.ACMEDNS01Config.RecursiveNameservers, "dns01-recursive-nameservers", cfg.ACMEDNS01Config.RecursiveNameservers, "nameservers (host:port) of the DNS-01 self-check")
	fs.BoolVar(&cfg.ACMEDNS01Config.RecursiveNameserversOnly, "dns01-recursive-nameservers-only", cfg.ACMEDNS01Config.RecursiveNameserversOnly, "")
	fs.DurationVar(&cfg.ACMEDNS01Config.CheckRetryPeriod, "dns01-check-retry-period", cfg.ACMEDNS01Config.CheckRetryPeriod, "")
	fs.IntVar(&cfg.MaxConcurrentChallenges, "max-concurrent-challenges", cfg.MaxConcurrentChallenges, "")
	fs.IntVar(&cfg.NumberOfConcurrentWorkers, "concurrent-workers", cfg.NumberOfConcurrentWorkers, "")
	fs.BoolVar(&cfg.EnableCertificateOwnerRef, "enable-certificate-owner-ref", cfg.EnableCertificateOwnerRef, "")
	fs.StringVar(&cfg.IngressShimConfig.DefaultIssuerName, "default-issuer-name", cfg.IngressShimConfig.DefaultIssuerName, "")
	fs.StringVar(&cfg.IngressShimConfig.DefaultIssuerKind, "default-issuer-kind", cfg.IngressShimConfig.DefaultIssuerKind, "")
	fs.StringVar(&cfg.IngressShimConfig.DefaultIssuerGroup, "default-issuer-group", cfg.IngressShimConfig.DefaultIssuerGroup, "")
	fs.StringVar(&cfg.MetricsListenAddress, "metrics-listen-address", cfg.MetricsListenAddress, "")
	fs.StringVar(&cfg.HealthzListenAddress, "healthz-listen-address", cfg.HealthzListenAddress, "")
	fs.Float32Var(&cfg.KubernetesAPIQPS, "kube-api-qps", cfg.KubernetesAPIQPS, "")
	fs.IntVar(&cfg.KubernetesAPIBurst, "kube-api-burst", cfg.KubernetesAPIBurst, "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		fail(err)
	}
	klogFlags := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("v", fmt.Sprint(*verbosity))
	klog.EnableContextualLogging(true)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log)
	if err := run(ctx, cfg); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "cert-manager controller: %v\n", err)
	os.Exit(1)
}

// defaultConfiguration is cert-manager v1.21's controller configuration
// with its defaults (internal/apis/config/controller/v1alpha1/defaults.go
// and config/shared's), written out: that package imports every issuer
// type's controllers, Venafi's among them, which cannot be built here.
func defaultConfiguration() *config.ControllerConfiguration {
	return &config.ControllerConfiguration{
		KubernetesAPIQPS:         20,
		KubernetesAPIBurst:       50,
		ClusterResourceNamespace: "kube-system",
		LeaderElectionConfig: config.LeaderElectionConfig{
			LeaderElectionConfig: shared.LeaderElectionConfig{
				Enabled:       true,
				Namespace:     "kube-system",
				LeaseDuration: 60 * time.Second,
				RenewDeadline: 40 * time.Second,
				RetryPeriod:   15 * time.Second,
			},
			HealthzTimeout: 20 * time.Second,
		},
		Controllers:                     []string{"*"},
		ClusterIssuerAmbientCredentials: true,
		CopiedAnnotationPrefixes:        []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
		NumberOfConcurrentWorkers:       5,
		MaxConcurrentChallenges:         60,
		MetricsListenAddress:            "0.0.0.0:9402",
		HealthzListenAddress:            "0.0.0.0:9403",
		IngressShimConfig: config.IngressShimConfig{
			DefaultIssuerKind:                 "Issuer",
			DefaultIssuerGroup:                "cert-manager.io",
			DefaultAutoCertificateAnnotations: []string{"kubernetes.io/tls-acme"},
		},
		ACMEHTTP01Config: config.ACMEHTTP01Config{
			SolverImage:                 "quay.io/jetstack/cert-manager-acmesolver:" + util.AppVersion,
			SolverResourceRequestCPU:    "10m",
			SolverResourceRequestMemory: "64Mi",
			SolverResourceLimitsCPU:     "100m",
			SolverResourceLimitsMemory:  "64Mi",
			SolverRunAsNonRoot:          true,
		},
		ACMEDNS01Config: config.ACMEDNS01Config{CheckRetryPeriod: 10 * time.Second},
		CertificateRequestMinimumBackoffDuration: time.Hour,
		CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
	}
}

// defaultControllers is cert-manager's default set, less the issuer types
// other than ACME and the Gateway API shim, which this build leaves out.
var defaultControllers = []string{
	"issuers", "clusterissuers", "certificates-metrics", "ingress-shim", "orders", "challenges",
	"certificaterequests-issuer-acme", "certificaterequests-approver",
	"certificates-trigger", "certificates-issuing", "certificates-key-manager",
	"certificates-request-manager", "certificates-readiness", "certificates-revision-manager",
}

// enabled resolves --controllers as cert-manager does: "*" stands for its
// default set, "-name" removes a controller, "name" adds one.
func enabled(names []string) sets.Set[string] {
	out := sets.New[string]()
	for _, name := range names {
		switch {
		case name == "*":
			out.Insert(defaultControllers...)
		case !strings.HasPrefix(name, "-"):
			out.Insert(name)
		}
	}
	for _, name := range names {
		if after, ok := strings.CutPrefix(name, "-"); ok {
			out.Delete(after)
		}
	}
	return out
}

func quantity(s string) resource.Quantity {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		fail(fmt.Errorf("bad quantity %q: %w", s, err))
	}
	return q
}

func contextFactory(ctx context.Context, cfg *config.ControllerConfiguration) (*controller.ContextFactory, error) {
	nameservers := cfg.ACMEDNS01Config.RecursiveNameservers
	if len(nameservers) == 0 {
		nameservers = dnsutil.RecursiveNameservers
	}
	http01 := cfg.ACMEHTTP01Config
	return controller.NewContextFactory(ctx, controller.ContextOptions{
		Kubeconfig:         cfg.KubeConfig,
		APIServerHost:      cfg.APIServerHost,
		KubernetesAPIQPS:   cfg.KubernetesAPIQPS,
		KubernetesAPIBurst: cfg.KubernetesAPIBurst,
		Namespace:          cfg.Namespace,
		ACMEOptions: controller.ACMEOptions{
			HTTP01SolverImage:                 http01.SolverImage,
			HTTP01SolverResourceRequestCPU:    quantity(http01.SolverResourceRequestCPU),
			HTTP01SolverResourceRequestMemory: quantity(http01.SolverResourceRequestMemory),
			HTTP01SolverResourceLimitsCPU:     quantity(http01.SolverResourceLimitsCPU),
			HTTP01SolverResourceLimitsMemory:  quantity(http01.SolverResourceLimitsMemory),
			ACMEHTTP01SolverRunAsNonRoot:      http01.SolverRunAsNonRoot,
			HTTP01SolverRuntimeClassName:      http01.SolverRuntimeClassName,
			HTTP01SolverNameservers:           http01.SolverNameservers,
			HTTP01SolverExtraLabels:           http01.SolverExtraLabels,
			DNS01Nameservers:                  nameservers,
			DNS01CheckRetryPeriod:             cfg.ACMEDNS01Config.CheckRetryPeriod,
			DNS01CheckAuthoritative:           !cfg.ACMEDNS01Config.RecursiveNameserversOnly,
		},
		SchedulerOptions: controller.SchedulerOptions{MaxConcurrentChallenges: cfg.MaxConcurrentChallenges},
		IssuerOptions: controller.IssuerOptions{
			ClusterResourceNamespace:        cfg.ClusterResourceNamespace,
			ClusterIssuerAmbientCredentials: cfg.ClusterIssuerAmbientCredentials,
			IssuerAmbientCredentials:        cfg.IssuerAmbientCredentials,
		},
		IngressShimOptions: controller.IngressShimOptions{
			DefaultIssuerName:                 cfg.IngressShimConfig.DefaultIssuerName,
			DefaultIssuerKind:                 cfg.IngressShimConfig.DefaultIssuerKind,
			DefaultIssuerGroup:                cfg.IngressShimConfig.DefaultIssuerGroup,
			DefaultAutoCertificateAnnotations: cfg.IngressShimConfig.DefaultAutoCertificateAnnotations,
			ExtraCertificateAnnotations:       cfg.IngressShimConfig.ExtraCertificateAnnotations,
			GatewayAPIExtraProtocols:          sets.New(cfg.GatewayAPIConfig.ExtraProtocols...),
		},
		CertificateOptions: controller.CertificateOptions{
			EnableOwnerRef:                           cfg.EnableCertificateOwnerRef,
			CopiedAnnotationPrefixes:                 cfg.CopiedAnnotationPrefixes,
			CertificateRequestMinimumBackoffDuration: cfg.CertificateRequestMinimumBackoffDuration,
			CertificateRequestMaximumBackoffDuration: cfg.CertificateRequestMaximumBackoffDuration,
		},
	})
}

func run(ctx context.Context, cfg *config.ControllerConfiguration) error {
	log := logf.FromContext(ctx)
	log.Info("starting cert-manager controller", "version", util.AppVersion)
	factory, err := contextFactory(ctx, cfg)
	if err != nil {
		return err
	}
	base, err := factory.Build()
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)

	metrics, err := net.Listen("tcp", cfg.MetricsListenAddress)
	if err != nil {
		return fmt.Errorf("metrics address %s: %w", cfg.MetricsListenAddress, err)
	}
	base.Metrics.SetupACMECollector(base.SharedInformerFactory.Acme().V1().Challenges().Lister())
	base.Metrics.SetupCertificateCollector(base.SharedInformerFactory.Certmanager().V1().Certificates().Lister())
	base.Metrics.SetupIssuerCollector(base.SharedInformerFactory.Certmanager().V1().Issuers().Lister())
	base.Metrics.SetupClusterIssuerCollector(base.SharedInformerFactory.Certmanager().V1().ClusterIssuers().Lister())
	metricsServer := base.Metrics.NewServer(metrics)
	g.Go(func() error {
		if err := metricsServer.Serve(metrics); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return metricsServer.Shutdown(shutdown) //nolint:contextcheck
	})

	health, err := net.Listen("tcp", cfg.HealthzListenAddress)
	if err != nil {
		return fmt.Errorf("healthz address %s: %w", cfg.HealthzListenAddress, err)
	}
	healthServer := healthz.NewServer(cfg.LeaderElectionConfig.HealthzTimeout)
	g.Go(func() error { return healthServer.Start(ctx, health) })

	elected := make(chan struct{})
	if cfg.LeaderElectionConfig.Enabled {
		g.Go(func() error { return lead(ctx, factory, cfg, healthServer, elected) })
	} else {
		close(elected)
	}
	select {
	case <-ctx.Done():
		return g.Wait()
	case <-elected:
	}

	on := enabled(cfg.Controllers)
	log.Info("enabled controllers", "controllers", sets.List(on))
	for name, construct := range controller.Known() {
		if !on.Has(name) {
			continue
		}
		c, err := construct(factory)
		if err != nil {
			return fmt.Errorf("starting controller %s: %w", name, err)
		}
		g.Go(func() error { return c.Run(cfg.NumberOfConcurrentWorkers, ctx) })
	}
	base.SharedInformerFactory.Start(ctx.Done())
	base.KubeSharedInformerFactory.Start(ctx.Done())
	base.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	err = g.Wait()
	base.HTTP01ResourceMetadataInformersFactory.Shutdown()
	base.KubeSharedInformerFactory.Shutdown()
	base.SharedInformerFactory.Shutdown()
	return err
}

// lead holds cert-manager's Lease (cert-manager-controller) and closes
// elected when it is ours; losing it ends the process, as in cert-manager.
func lead(ctx context.Context, factory *controller.ContextFactory, cfg *config.ControllerConfiguration, health *healthz.Server, elected chan struct{}) error {
	le, err := factory.Build("leader-election")
	if err != nil {
		return err
	}
	host, err := os.Hostname()
	if err != nil {
		return err
	}
	lock, err := resourcelock.NewWithLabels(resourcelock.LeasesResourceLock,
		cfg.LeaderElectionConfig.Namespace, "cert-manager-controller",
		le.Client.CoreV1(), le.Client.CoordinationV1(),
		resourcelock.ResourceLockConfig{Identity: host + "-external-cert-manager-controller", EventRecorder: le.Recorder},
		map[string]string{"app.kubernetes.io/managed-by": "cert-manager"})
	if err != nil {
		return err
	}
	lost := make(chan error, 1)
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   cfg.LeaderElectionConfig.LeaseDuration,
		RenewDeadline:   cfg.LeaderElectionConfig.RenewDeadline,
		RetryPeriod:     cfg.LeaderElectionConfig.RetryPeriod,
		ReleaseOnCancel: true,
		WatchDog:        health.LeaderHealthzAdaptor,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { close(elected) },
			OnStoppedLeading: func() {
				if ctx.Err() == nil {
					lost <- errors.New("leader election lost")
				}
			},
		},
	})
	if err != nil {
		return err
	}
	elector.Run(ctx)
	select {
	case err := <-lost:
		return err
	default:
		return nil
	}
}
