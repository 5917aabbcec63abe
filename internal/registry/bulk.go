package registry

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/roost-iot/roost/internal/errcode"
)

// ImportDevice is one entry of a bulk registry request (ExportImportDevice in IoT Hub's API).
type ImportDevice struct {
	ID             string          `json:"id"`
	ModuleID       string          `json:"moduleId,omitempty"`
	ETag           string          `json:"eTag,omitempty"`
	ImportMode     string          `json:"importMode"`
	Status         string          `json:"status,omitempty"`
	StatusReason   *string         `json:"statusReason,omitempty"`
	Authentication *Authentication `json:"authentication,omitempty"`
	TwinETag       string          `json:"twinETag,omitempty"`
	Tags           json.RawMessage `json:"tags,omitempty"`
	Properties     json.RawMessage `json:"properties,omitempty"`
	Capabilities   *Capabilities   `json:"capabilities,omitempty"`
	DeviceScope    *string         `json:"deviceScope,omitempty"`
	ParentScopes   []string        `json:"parentScopes,omitempty"`
}

// BulkResult is the answer to a bulk request.
type BulkResult struct {
	IsSuccessful bool          `json:"isSuccessful"`
	Errors       []BulkError   `json:"errors"`
	Warnings     []BulkWarning `json:"warnings"`
}

// BulkError reports one entry that failed.
type BulkError struct {
	DeviceID    string `json:"deviceId"`
	ModuleID    string `json:"moduleId,omitempty"`
	ErrorCode   string `json:"errorCode"`
	ErrorStatus string `json:"errorStatus"`
	// Err is the typed error, for diagnostics; it is not sent.
	Err error `json:"-"`
}

// BulkWarning reports one entry that succeeded with a remark.
type BulkWarning struct {
	DeviceID      string `json:"deviceId"`
	WarningCode   string `json:"warningCode"`
	WarningStatus string `json:"warningStatus"`
}

// Import modes, matched case-insensitively.
const (
	ModeCreate                    = "create"
	ModeUpdate                    = "update"
	ModeUpdateIfMatchETag         = "updateifmatchetag"
	ModeCreateOrUpdate            = "createorupdate"
	ModeCreateOrUpdateIfMatchETag = "createorupdateifmatchetag"
	ModeDelete                    = "delete"
	ModeDeleteIfMatchETag         = "deleteifmatchetag"
)

// BulkOperation names the operation an entry performs, for diagnostic records ("create",
// "update" or "delete"), or "" for an unknown mode.
func BulkOperation(mode string) string {
	switch strings.ToLower(mode) {
	case ModeCreate:
		return "create"
	case ModeUpdate, ModeUpdateIfMatchETag, ModeCreateOrUpdate, ModeCreateOrUpdateIfMatchETag:
		return "update"
	case ModeDelete, ModeDeleteIfMatchETag:
		return "delete"
	}
	return ""
}

// CheckBulk validates a whole bulk request before anything is applied: 1 to 100 entries, each
// (device, module) pair at most once, every mode known, every id valid.
func CheckBulk(entries []ImportDevice) error {
	if len(entries) == 0 {
		return errcode.New(errcode.ArgumentInvalid, "the bulk request holds no devices")
	}
	if len(entries) > MaxBulkDevices {
		return errcode.New(errcode.TooManyDevices, "a bulk request may hold at most %d devices; this one holds %d", MaxBulkDevices, len(entries))
	}
	seen := make(map[[2]string]bool, len(entries))
	for _, e := range entries {
		if err := ValidateID("DeviceId", e.ID); err != nil {
			return err
		}
		if e.ModuleID != "" {
			if err := ValidateID("ModuleId", e.ModuleID); err != nil {
				return err
			}
		}
		k := [2]string{e.ID, e.ModuleID}
		if seen[k] {
			return errcode.New(errcode.DeviceDefinedMultipleTimes, "device '%s' appears more than once in the bulk request", e.ID)
		}
		seen[k] = true
		if BulkOperation(e.ImportMode) == "" {
			return errcode.New(errcode.ArgumentInvalid,
				"importMode '%s' is invalid: use create, update, updateIfMatchETag, createOrUpdate, createOrUpdateIfMatchETag, delete or deleteIfMatchETag",
				printable(e.ImportMode))
		}
	}
	return nil
}

// Bulk applies a checked bulk request entry by entry. Entries are independent: one that fails
// is reported and the others still apply, as in IoT Hub.
func (r *Registry) Bulk(ctx context.Context, entries []ImportDevice) (BulkResult, error) {
	if err := CheckBulk(entries); err != nil {
		return BulkResult{}, err
	}
	res := BulkResult{IsSuccessful: true, Errors: []BulkError{}, Warnings: []BulkWarning{}}
	for _, e := range entries {
		var err error
		if e.ModuleID != "" {
			err = r.bulkModule(ctx, e)
		} else {
			err = r.bulkDevice(ctx, e)
		}
		if err != nil {
			ce := errcode.As(err)
			res.IsSuccessful = false
			res.Errors = append(res.Errors, BulkError{
				DeviceID: e.ID, ModuleID: e.ModuleID, ErrorCode: ce.Code.Name(), ErrorStatus: ce.Msg, Err: ce,
			})
		}
	}
	return res, nil
}

func (e ImportDevice) device(old *Device) Device {
	d := Device{DeviceID: e.ID, Status: e.Status, StatusReason: e.StatusReason, DeviceScope: e.DeviceScope, ParentScopes: e.ParentScopes}
	if old != nil {
		if d.Status == "" {
			d.Status = old.Status
		}
		d.Authentication = old.Authentication
		d.Capabilities = old.Capabilities
	}
	if e.Authentication != nil {
		d.Authentication = *e.Authentication
	}
	if e.Capabilities != nil {
		d.Capabilities = *e.Capabilities
	}
	return d
}

func (r *Registry) bulkDevice(ctx context.Context, e ImportDevice) error {
	mode := strings.ToLower(e.ImportMode)
	ifMatch := ""
	if strings.HasSuffix(mode, "ifmatchetag") {
		ifMatch = e.ETag
		if ifMatch == "" {
			return errcode.New(errcode.ArgumentNull, "importMode %s needs an eTag", e.ImportMode)
		}
	}
	switch mode {
	case ModeCreate:
		_, err := r.CreateDevice(ctx, e.device(nil))
		return err
	case ModeDelete, ModeDeleteIfMatchETag:
		return r.DeleteDevice(ctx, e.ID, ifMatch)
	}
	old, err := r.GetDevice(ctx, e.ID)
	if errcode.Is(err, errcode.DeviceNotFound) && strings.HasPrefix(mode, ModeCreateOrUpdate) {
		_, err = r.CreateDevice(ctx, e.device(nil))
		return err
	}
	if err != nil {
		return err
	}
	_, err = r.UpdateDevice(ctx, e.device(&old), ifMatch)
	return err
}

func (r *Registry) bulkModule(ctx context.Context, e ImportDevice) error {
	mode := strings.ToLower(e.ImportMode)
	ifMatch := ""
	if strings.HasSuffix(mode, "ifmatchetag") {
		ifMatch = e.ETag
		if ifMatch == "" {
			return errcode.New(errcode.ArgumentNull, "importMode %s needs an eTag", e.ImportMode)
		}
	}
	m := Module{DeviceID: e.ID, ModuleID: e.ModuleID}
	if e.Authentication != nil {
		m.Authentication = *e.Authentication
	}
	switch mode {
	case ModeCreate:
		_, err := r.CreateModule(ctx, m)
		return err
	case ModeDelete, ModeDeleteIfMatchETag:
		return r.DeleteModule(ctx, e.ID, e.ModuleID, ifMatch)
	}
	old, err := r.GetModule(ctx, e.ID, e.ModuleID)
	if errcode.Is(err, errcode.ModuleNotFound) && strings.HasPrefix(mode, ModeCreateOrUpdate) {
		_, err = r.CreateModule(ctx, m)
		return err
	}
	if err != nil {
		return err
	}
	if e.Authentication == nil {
		m.Authentication = old.Authentication
	}
	m.ManagedBy = old.ManagedBy
	_, err = r.UpdateModule(ctx, m, ifMatch)
	return err
}
