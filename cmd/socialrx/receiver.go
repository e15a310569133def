package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/socialrx/socialrx/config"
	"github.com/socialrx/socialrx/outbox"
)

// runDemoReceiver runs a webhook receiver for the demo directory: it verifies each Standard Webhooks signature
// with the demo secret, drops duplicates by webhook-id (deliveries are at least once), and prints one line per
// event. It is also the reference for what a community service's receiver must do.
func runDemoReceiver(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo-receiver", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8081", "listen address")
	secret := fs.String("secret", "", "whsec_… secret (default: the demo frome-walks secret)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *secret == "" {
		demo, err := config.LoadDemo()
		if err != nil {
			return err
		}
		svc, _ := demo.Directory.Service("frome-walks")
		*secret = svc.Delivery.Secret
	}
	if err := config.ValidateSecret(*secret); err != nil {
		return usageError{"--secret: " + err.Error()}
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /hooks/referrals", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := outbox.Verify(*secret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
			fmt.Fprintf(stdout, "REJECTED webhook-id=%s: %v\n", r.Header.Get("webhook-id"), err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		id := r.Header.Get("webhook-id")
		mu.Lock()
		dup := seen[id]
		seen[id] = true
		mu.Unlock()
		var ev struct {
			Type string `json:"type"`
			Data struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &ev)
		if dup {
			fmt.Fprintf(stdout, "duplicate webhook-id=%s (already processed)\n", id)
		} else {
			fmt.Fprintf(stdout, "%s referral=%s status=%s webhook-id=%s\n", ev.Type, ev.Data.ID, ev.Data.Status, id)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stderr, "demo receiver listening on http://%s/hooks/referrals\n", ln.Addr())
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
