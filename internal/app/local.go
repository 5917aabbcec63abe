package app

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/roost-iot/roost/internal/auth"
)

// localFile is what `roost serve` leaves in its data dir so that CLI commands on the same machine
// find the hub without flags: its name, where it listens, its CA and its policies' keys. The file
// is readable by its owner only.
type localFile struct {
	HostName  string        `json:"hostName"`
	HTTPSAddr string        `json:"httpsAddr"`
	MQTTAddr  string        `json:"mqttAddr,omitempty"`
	AdminAddr string        `json:"adminAddr,omitempty"`
	CAFile    string        `json:"caFile,omitempty"`
	Policies  []auth.Policy `json:"policies"`
	WrittenAt time.Time     `json:"writtenAt"`
}

const localFileName = "local.json"

func (h *Hub) writeLocal() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pols, err := h.Policies.Policies(ctx)
	if err != nil {
		return err
	}
	caFile := h.TLS.CAFile
	if caFile != "" {
		if abs, err := filepath.Abs(caFile); err == nil {
			caFile = abs
		}
	}
	lf := localFile{HostName: h.Config.HostName, HTTPSAddr: h.HTTPSAddr, MQTTAddr: h.MQTTAddr, AdminAddr: h.AdminAddr, CAFile: caFile, Policies: pols, WrittenAt: time.Now().UTC()}
	b, _ := json.MarshalIndent(lf, "", "  ")
	path := filepath.Join(h.Config.DataDir, localFileName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp, path)
}

func readLocal(dataDir string) (localFile, error) {
	var lf localFile
	b, err := os.ReadFile(filepath.Join(dataDir, localFileName))
	if err != nil {
		if os.IsNotExist(err) {
			return lf, fmt.Errorf("no hub found in data dir %s: start one with `roost serve --data-dir %s`, or pass --connection-string", dataDir, dataDir)
		}
		return lf, err
	}
	if err := json.Unmarshal(b, &lf); err != nil {
		return lf, fmt.Errorf("%s: %w", filepath.Join(dataDir, localFileName), err)
	}
	return lf, nil
}
