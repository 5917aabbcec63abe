package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/roost-iot/roost/internal/errcode"
	"github.com/roost-iot/roost/internal/methods"
	"github.com/roost-iot/roost/internal/query"
	"github.com/roost-iot/roost/internal/twin"
)

// Job types, as the service API names them.
const (
	TypeUpdateTwin   = "scheduleUpdateTwin"
	TypeDeviceMethod = "scheduleDeviceMethod"
)

// Job statuses (IoT Hub's JobStatus). A job is created queued (start time now or past) or
// scheduled (start time ahead), runs, and ends completed, failed or cancelled.
const (
	StatusQueued    = "queued"
	StatusScheduled = "scheduled"
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Device row statuses (IoT Hub's DeviceJobStatus; note "canceled" with one l, as the service
// spells it for devices).
const (
	DevicePending   = "pending"
	DeviceRunning   = "running"
	DeviceCompleted = "completed"
	DeviceFailed    = "failed"
	DeviceCanceled  = "canceled"
)

// Limits on a job request.
const (
	// MaxIDLength is the longest job id accepted, in bytes.
	MaxIDLength = 128
	// DefaultMaxExecution is the maxExecutionTimeInSeconds of a job that gives none (the
	// SDKs' default).
	DefaultMaxExecution = 3600 * time.Second
	// MaxBody is the largest job request body read, in bytes.
	MaxBody = 1 << 20
)

// Job is a job as the service API returns it (JobResponse).
type Job struct {
	JobID                     string          `json:"jobId"`
	QueryCondition            string          `json:"queryCondition"`
	CreatedTime               time.Time       `json:"createdTime"`
	StartTime                 time.Time       `json:"startTime"`
	EndTime                   *time.Time      `json:"endTime,omitempty"`
	MaxExecutionTimeInSeconds int64           `json:"maxExecutionTimeInSeconds"`
	Type                      string          `json:"type"`
	CloudToDeviceMethod       *MethodRequest  `json:"cloudToDeviceMethod,omitempty"`
	UpdateTwin                json.RawMessage `json:"updateTwin,omitempty"`
	Status                    string          `json:"status"`
	FailureReason             string          `json:"failureReason,omitempty"`
	StatusMessage             string          `json:"statusMessage,omitempty"`
	DeviceJobStatistics       Statistics      `json:"deviceJobStatistics"`
}

// Terminal reports whether the job has ended.
func (j *Job) Terminal() bool {
	switch j.Status {
	case StatusCompleted, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// MethodRequest is a method job's cloudToDeviceMethod.
type MethodRequest struct {
	MethodName               string          `json:"methodName"`
	Payload                  json.RawMessage `json:"payload"`
	ResponseTimeoutInSeconds int             `json:"responseTimeoutInSeconds"`
	ConnectTimeoutInSeconds  int             `json:"connectTimeoutInSeconds"`
}

// Statistics are a job's device counts (deviceJobStatistics).
type Statistics struct {
	DeviceCount    int `json:"deviceCount"`
	FailedCount    int `json:"failedCount"`
	SucceededCount int `json:"succeededCount"`
	RunningCount   int `json:"runningCount"`
	PendingCount   int `json:"pendingCount"`
}

// Row is one device's part in a job: a row of the query language's devices.jobs collection.
type Row struct {
	DeviceID               string     `json:"deviceId"`
	JobID                  string     `json:"jobId"`
	JobType                string     `json:"jobType"`
	Status                 string     `json:"status"`
	StartTimeUtc           *time.Time `json:"startTimeUtc,omitempty"`
	EndTimeUtc             *time.Time `json:"endTimeUtc,omitempty"`
	CreatedDateTimeUtc     time.Time  `json:"createdDateTimeUtc"`
	LastUpdatedDateTimeUtc time.Time  `json:"lastUpdatedDateTimeUtc"`
	Outcome                *Outcome   `json:"outcome,omitempty"`
	Error                  *RowError  `json:"error,omitempty"`
}

// Outcome is what a device answered: for method jobs the method's status and payload.
type Outcome struct {
	DeviceMethodResponse *MethodResponse `json:"deviceMethodResponse"`
}

// MethodResponse is a device's answer to a method job.
type MethodResponse struct {
	Status  int             `json:"status"`
	Payload json.RawMessage `json:"payload"`
}

// RowError is why a device's part failed: the IoT Hub error name and its text, as the
// service's DeviceJobError carries them.
type RowError struct {
	Code        string `json:"code"`
	Description string `json:"description"`
}

// rowError turns an operation's error into a row's error.
func rowError(err error) *RowError {
	e := errcode.As(err)
	msg := e.Msg
	if msg == "" {
		msg = e.Code.Name()
	}
	return &RowError{Code: e.Code.Name(), Description: msg}
}

// spec is a decoded and checked job request.
type spec struct {
	id          string
	typ         string
	condition   string
	start       *time.Time
	maxExec     time.Duration
	updateTwin  json.RawMessage
	ifMatch     string
	method      *MethodRequest
	call        methods.Call
	messageSize int
}

// CheckID checks a job id from the path: 1 to 128 bytes without control characters.
func CheckID(id string) error {
	if id == "" {
		return errcode.New(errcode.ArgumentNull, "the job id is empty")
	}
	if len(id) > MaxIDLength {
		return errcode.New(errcode.ArgumentInvalid, "the job id is longer than %d bytes", MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] == 0x7f {
			return errcode.New(errcode.ArgumentInvalid, "the job id contains a control character")
		}
	}
	return nil
}

// decodeSpec reads a PUT /jobs/v2/{id} body: {jobId, type, queryCondition, startTime,
// maxExecutionTimeInSeconds, updateTwin | cloudToDeviceMethod}. Names match in any case, as
// IoT Hub's JSON reader does. Errors are 400004 ArgumentInvalid (400005 for a missing member,
// 400006 for a body that is not JSON).
func decodeSpec(id string, body []byte) (spec, error) {
	if err := CheckID(id); err != nil {
		return spec{}, err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return spec{}, errcode.New(errcode.ArgumentNull, "the request has no body; it must be a JSON job description")
	}
	var raw struct {
		JobID               json.RawMessage `json:"jobId"`
		Type                json.RawMessage `json:"type"`
		QueryCondition      json.RawMessage `json:"queryCondition"`
		StartTime           json.RawMessage `json:"startTime"`
		MaxExecution        json.RawMessage `json:"maxExecutionTimeInSeconds"`
		UpdateTwin          json.RawMessage `json:"updateTwin"`
		CloudToDeviceMethod json.RawMessage `json:"cloudToDeviceMethod"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return spec{}, errcode.Wrap(errcode.IotHubFormatError, err, "the request body must be a JSON object, not %s", ute.Value)
		}
		return spec{}, errcode.Wrap(errcode.IotHubFormatError, err, "the request body is not valid JSON")
	}
	s := spec{id: id, messageSize: len(body), maxExec: DefaultMaxExecution}

	// jobId: the SDK sends a string, or a number when the caller gave one.
	if !isNull(raw.JobID) {
		var bodyID string
		if err := json.Unmarshal(raw.JobID, &bodyID); err != nil {
			var n json.Number
			if json.Unmarshal(raw.JobID, &n) != nil {
				return spec{}, errcode.New(errcode.ArgumentInvalid, "jobId must be a string")
			}
			bodyID = n.String()
		}
		if bodyID != id {
			return spec{}, errcode.New(errcode.ArgumentInvalid, "the jobId in the body ('%s') does not match the one in the path ('%s')", bodyID, id)
		}
	}
	if isNull(raw.Type) || json.Unmarshal(raw.Type, &s.typ) != nil || s.typ == "" {
		return spec{}, errcode.New(errcode.ArgumentInvalid, "type must be %s or %s", TypeUpdateTwin, TypeDeviceMethod)
	}
	switch {
	case strings.EqualFold(s.typ, TypeUpdateTwin):
		s.typ = TypeUpdateTwin
	case strings.EqualFold(s.typ, TypeDeviceMethod):
		s.typ = TypeDeviceMethod
	default:
		return spec{}, errcode.New(errcode.ArgumentInvalid, "type '%s' is not %s or %s", s.typ, TypeUpdateTwin, TypeDeviceMethod)
	}

	if isNull(raw.QueryCondition) {
		return spec{}, errcode.New(errcode.ArgumentNull, "queryCondition is required: a condition over device twins such as deviceId IN ['d1', 'd2'], or *")
	}
	if json.Unmarshal(raw.QueryCondition, &s.condition) != nil {
		return spec{}, errcode.New(errcode.ArgumentInvalid, "queryCondition must be a string")
	}
	if _, err := query.ParseCondition(s.condition); err != nil {
		return spec{}, err
	}

	if !isNull(raw.StartTime) {
		var st string
		if json.Unmarshal(raw.StartTime, &st) != nil {
			return spec{}, errcode.New(errcode.ArgumentInvalid, "startTime must be an ISO 8601 date and time string")
		}
		t, err := parseTime(st)
		if err != nil {
			return spec{}, errcode.New(errcode.ArgumentInvalid, "startTime '%s' is not an ISO 8601 date and time such as 2025-03-04T12:00:00Z", st)
		}
		s.start = &t
	}
	if !isNull(raw.MaxExecution) {
		var f float64
		if json.Unmarshal(raw.MaxExecution, &f) != nil || f < 0 || f != float64(int64(f)) || f > 1<<31 {
			return spec{}, errcode.New(errcode.ArgumentInvalid, "maxExecutionTimeInSeconds must be a whole number of seconds")
		}
		if f > 0 {
			s.maxExec = time.Duration(f) * time.Second
		}
	}

	switch s.typ {
	case TypeUpdateTwin:
		if !isNull(raw.CloudToDeviceMethod) {
			return spec{}, errcode.New(errcode.ArgumentInvalid, "a %s job takes updateTwin, not cloudToDeviceMethod", TypeUpdateTwin)
		}
		if err := s.decodeTwin(raw.UpdateTwin); err != nil {
			return spec{}, err
		}
	case TypeDeviceMethod:
		if !isNull(raw.UpdateTwin) {
			return spec{}, errcode.New(errcode.ArgumentInvalid, "a %s job takes cloudToDeviceMethod, not updateTwin", TypeDeviceMethod)
		}
		if err := s.decodeMethod(raw.CloudToDeviceMethod); err != nil {
			return spec{}, err
		}
	}
	return s, nil
}

// decodeTwin checks updateTwin: a twin patch whose etag ("*" or absent for any twin) becomes
// each device's If-Match, and whose tags and properties.desired must be what a PATCH /twins
// would accept. Desired or reported properties at the top level are refused (IoT Hub answers
// ArgumentInvalid), as is a non-empty reported section.
func (s *spec) decodeTwin(raw json.RawMessage) error {
	if isNull(raw) {
		return errcode.New(errcode.ArgumentNull, "updateTwin is required for a %s job", TypeUpdateTwin)
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return errcode.New(errcode.ArgumentInvalid, "updateTwin must be a JSON object")
	}
	for k, v := range m {
		switch strings.ToLower(k) {
		case "desired", "reported":
			return errcode.New(errcode.ArgumentInvalid, "updateTwin has '%s' at the top level: put desired properties under properties.desired", k)
		case "etag":
			if !isNull(v) && json.Unmarshal(v, &s.ifMatch) != nil {
				return errcode.New(errcode.ArgumentInvalid, "updateTwin.etag must be a string")
			}
		case "properties":
			var p map[string]json.RawMessage
			if isNull(v) {
				continue
			}
			if json.Unmarshal(v, &p) != nil {
				return errcode.New(errcode.ArgumentInvalid, "updateTwin.properties must be a JSON object")
			}
			for pk, pv := range p {
				if strings.EqualFold(pk, "reported") && !isNull(pv) && !isEmptyObject(pv) {
					return errcode.New(errcode.ArgumentInvalid, "updateTwin.properties.reported cannot be set by a job: only the device reports them")
				}
			}
		}
	}
	if err := twin.CheckPatch(raw); err != nil {
		return err
	}
	s.updateTwin = append(json.RawMessage(nil), raw...)
	return nil
}

// decodeMethod checks cloudToDeviceMethod with the direct method rules (name, payload of at
// most 128 KB, responseTimeoutInSeconds 5 to 300, connectTimeoutInSeconds 0 to 300).
func (s *spec) decodeMethod(raw json.RawMessage) error {
	if isNull(raw) {
		return errcode.New(errcode.ArgumentNull, "cloudToDeviceMethod is required for a %s job", TypeDeviceMethod)
	}
	call, err := methods.DecodeCall(raw)
	if err != nil {
		return err
	}
	if err := call.Check(); err != nil {
		return err
	}
	payload := json.RawMessage("null")
	if len(call.Payload) > 0 {
		payload = append(json.RawMessage(nil), call.Payload...)
	}
	rt := call.ResponseTimeout
	if rt == 0 {
		rt = methods.DefaultResponseTimeout
	}
	s.call = call
	s.method = &MethodRequest{MethodName: call.MethodName, Payload: payload,
		ResponseTimeoutInSeconds: int(rt / time.Second), ConnectTimeoutInSeconds: int(call.ConnectTimeout / time.Second)}
	return nil
}

// parseTime reads an ISO 8601 time; one without a zone is UTC, as IoT Hub reads it.
func parseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, errors.New("not an ISO 8601 time")
}

func isNull(b json.RawMessage) bool {
	b = bytes.TrimSpace(b)
	return len(b) == 0 || bytes.Equal(b, []byte("null"))
}

func isEmptyObject(b json.RawMessage) bool {
	var m map[string]any
	return json.Unmarshal(b, &m) == nil && len(m) == 0
}

// longDate formats a time as the JobsOperations records' startTimeUtc: "Tuesday, March 4, 2025".
func longDate(t time.Time) string {
	return t.UTC().Format("Monday, January 2, 2006")
}

func itoa(n int) string { return strconv.Itoa(n) }
