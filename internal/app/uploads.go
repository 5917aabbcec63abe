package app

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/blob"
	"github.com/roost-iot/roost/internal/upload"
)

// openUploads wires file uploads: the blob index, the store (built-in, or the external account
// of --blob-connection-string), the notification queue and the upload service.
func (h *Hub) openUploads(ctx context.Context) error {
	cfg := h.Config
	ix, err := blob.OpenIndex(ctx, h.Engine)
	if err != nil {
		return err
	}
	var store upload.Store
	if cfg.BlobConnectionString != "" {
		acct, err := blob.ParseConnectionString(cfg.BlobConnectionString)
		if err != nil {
			return err
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if h.TLS != nil && h.TLS.CAFile != "" {
			// An Azurite (or proxy) whose certificate the hub's own CA issued is trusted too.
			if pem, err := os.ReadFile(h.TLS.CAFile); err == nil {
				pool.AppendCertsFromPEM(pem)
			}
		}
		remote := blob.NewRemote(blob.RemoteConfig{Account: acct, Container: cfg.BlobContainer, Index: ix, RootCAs: pool, Logger: h.log})
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := remote.EnsureContainer(cctx); err != nil {
			h.log.Warn("could not check the upload container; uploads fail until the storage account is reachable", "err", err)
		}
		cancel()
		store = remote
	} else {
		host := cfg.BlobHost
		if host == "" {
			host = cfg.HostName
			// A fixed port other than 443 goes into the host name devices are given; port 0
			// (tests) cannot, since the port is chosen later.
			if _, port, err := net.SplitHostPort(cfg.HTTPSAddr); err == nil && port != "443" && port != "0" {
				host = net.JoinHostPort(host, port)
			}
		}
		// The content is in the engine; <data-dir>/blobs is where versions before it kept
		// content, imported on the first start with this one.
		h.Blobs, err = blob.OpenLocal(ctx, blob.LocalConfig{
			Engine: h.Engine, Dir: filepath.Join(cfg.DataDir, "blobs"), Index: ix, Account: strings.ToLower(hubName(cfg.HostName)),
			Container: cfg.BlobContainer, Host: host, NodeID: h.NodeID, Logger: h.log,
		})
		if err != nil {
			return fmt.Errorf("blob store: %w", err)
		}
		h.Blobs.StartGC(time.Hour)
		store = h.Blobs
	}
	var queue *upload.Queue
	if cfg.FileUploadNotifications {
		if queue, err = upload.OpenQueue(ctx, h.Engine, upload.QueueConfig{
			TTL: cfg.FileNotificationTTL, LockDuration: cfg.FileNotificationLock, MaxDeliveryCount: cfg.FileNotificationMaxDelivery,
		}); err != nil {
			return err
		}
	}
	h.Uploads, err = upload.Open(ctx, upload.Config{
		Engine: h.Engine, Store: store, Index: ix, Queue: queue, Diag: h.Diag, Metrics: h.Metrics,
		SASTTL: cfg.FileUploadSASTTL, NodeID: h.NodeID, Logger: h.log,
	})
	return err
}

// closeUploads stops the upload sweeper and the blob garbage collector.
func (h *Hub) closeUploads() {
	if h.Uploads != nil {
		h.Uploads.Close()
		h.Uploads = nil
	}
	if h.Blobs != nil {
		h.Blobs.Close()
	}
}

// uploadsDesc says where file uploads go, for the start-up banner.
func (h *Hub) uploadsDesc() string {
	if h.Blobs != nil {
		return "built-in blob store (in the engine) at " + h.Blobs.URI("")
	}
	if acct, err := blob.ParseConnectionString(h.Config.BlobConnectionString); err == nil {
		return "storage account " + acct.HostName() + ", container " + h.Config.BlobContainer
	}
	return "off"
}
