package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/zerodown/zerodown/internal/config"
	"github.com/zerodown/zerodown/internal/server"
	"github.com/zerodown/zerodown/internal/store"
	"github.com/zerodown/zerodown/internal/store/postgres"
	"github.com/zerodown/zerodown/internal/store/sqlite"
)

func newServerCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "server --config server.yaml",
		Short: "Run zerodown as a service: HTTP API, live dashboard, deploys run by the server",
		Long: `Run the control plane: the HTTP API (/api/v1, described at
/api/v1/openapi.json) and the web dashboard on one port, loopback by default.
The server runs deploys itself, through the same engine as 'zerodown deploy',
on the environments of the zerodown.yaml that server.yaml names. Artifacts are
uploaded once and kept by sha256.

The journal is SQLite under data: by default. With postgres: set, several
replicas share one PostgreSQL database: any of them serves the API and the
dashboard, each run is executed by the replica holding its lease, and when
that replica dies another takes the run over within lease and resumes it.

Every request needs a token (roles viewer, deployer, approver, admin):
create the first with 'zerodown server token create'. See docs/server.md.

SIGTERM and SIGINT stop taking runs, wait shutdown_timeout for the runs in
progress, then stop them (they roll back).`,
		Example: `  zerodown server token create --config server.yaml --name alice --role admin
  zerodown server --config server.yaml`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runServer(c, cfgPath) },
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "server.yaml", "the server.yaml to read")
	cmd.AddCommand(newServerTokenCmd())
	return cmd
}

func loadServerConfig(path string) (*config.Server, error) {
	cfg, err := config.LoadServer(path)
	if err != nil {
		return nil, badInput(err)
	}
	return cfg, nil
}

// openServerStore opens the server's journal: PostgreSQL when set, else
// SQLite under its data directory.
func openServerStore(ctx context.Context, cfg *config.Server) (store.Store, error) {
	if cfg.Postgres != "" {
		return postgres.Open(ctx, cfg.Postgres)
	}
	if err := os.MkdirAll(cfg.Data, 0o750); err != nil {
		return nil, fmt.Errorf("server data directory: %w", err)
	}
	return sqlite.Open(ctx, filepath.Join(cfg.Data, "state.db"), sqlite.Options{})
}

func runServer(c *cobra.Command, cfgPath string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := loadServerConfig(cfgPath)
	if err != nil {
		return err
	}
	dcfg, err := loadDeployConfig(cfg.Deploy)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(c.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	st, err := openServerStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	srv, err := server.New(server.Options{Config: cfg, Deploy: dcfg, Store: st, Log: logger})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	scheme := "http"
	if cfg.TLS != nil {
		scheme = "https"
	}
	journal := "SQLite " + filepath.Join(cfg.Data, "state.db")
	if cfg.Postgres != "" {
		journal = "PostgreSQL"
	}
	fmt.Fprintf(c.OutOrStdout(), "zerodown server: %s://%s (dashboard and /api/v1), %d environments of %s, journal in %s\n",
		scheme, ln.Addr(), len(dcfg.EnvOrder), cfg.Deploy, journal)
	if toks, err := st.ListTokens(ctx); err == nil && len(toks) == 0 {
		fmt.Fprintf(c.OutOrStdout(), "no tokens yet: create one with 'zerodown server token create --config %s --name NAME --role admin'\n", cfgPath)
	}
	return srv.Serve(ctx, ln)
}

func newServerTokenCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, list and revoke the server's API tokens (on its journal directly)",
		Long: `Manage API tokens on the server's journal directly, without a token: this is
how the first admin token is made. Tokens are stored hashed; a new token's
secret is printed once. Roles, each allowed what the ones before it are:
  viewer    read environments, hosts, runs, events, reports, metrics
  deployer  upload artifacts; start, promote, abort and roll back runs
  approver  approve manual gates; end a canary's steps early
  admin     manage tokens; read the audit log`,
	}
	var cfgPath, name, role string
	create := &cobra.Command{
		Use:   "create --name NAME --role ROLE",
		Short: "Create a token and print its secret (once)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return withServerStore(cfgPath, func(ctx context.Context, st store.Store) error {
				secret, t, err := server.CreateToken(ctx, st, name, role, store.ProcessOwner())
				if err != nil {
					return badInput(err)
				}
				server.Audit(ctx, st, store.ProcessOwner(), "token.create", t.ID, fmt.Sprintf("%s (%s), from the command line", t.Name, t.Role))
				fmt.Fprintln(c.OutOrStdout(), secret)
				fmt.Fprintf(c.ErrOrStderr(), "token %s (%s, id %s) created: the line above is its secret, shown this once\n", t.Name, t.Role, t.ID)
				return nil
			})
		},
	}
	create.Flags().StringVar(&name, "name", "", "who or what uses it: alice, gocd (required)")
	create.Flags().StringVar(&role, "role", "", "viewer, deployer, approver or admin (required)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return withServerStore(cfgPath, func(ctx context.Context, st store.Store) error {
				toks, err := st.ListTokens(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tBY\tREVOKED")
				for _, t := range toks {
					revoked := "-"
					if !t.RevokedAt.IsZero() {
						revoked = t.RevokedAt.Local().Format("2006-01-02 15:04")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Role, t.CreatedAt.Local().Format("2006-01-02 15:04"), t.CreatedBy, revoked)
				}
				return tw.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a token: it and its dashboard sessions stop working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withServerStore(cfgPath, func(ctx context.Context, st store.Store) error {
				t, err := st.RevokeToken(ctx, args[0])
				if errors.Is(err, store.ErrNotFound) {
					return badInput(fmt.Errorf("no token %s (see zerodown server token list)", args[0]))
				}
				if err != nil {
					return err
				}
				server.Audit(ctx, st, store.ProcessOwner(), "token.revoke", t.ID, t.Name+", from the command line")
				fmt.Fprintf(c.OutOrStdout(), "token %s (%s) revoked\n", t.ID, t.Name)
				return nil
			})
		},
	}
	for _, sub := range []*cobra.Command{create, list, revoke} {
		sub.Flags().StringVarP(&cfgPath, "config", "c", "server.yaml", "the server.yaml whose journal holds the tokens")
	}
	_ = create.MarkFlagRequired("name")
	_ = create.MarkFlagRequired("role")
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func withServerStore(cfgPath string, fn func(ctx context.Context, st store.Store) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := loadServerConfig(cfgPath)
	if err != nil {
		return err
	}
	st, err := openServerStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(ctx, st)
}
