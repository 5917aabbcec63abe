package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/roost-iot/roost/internal/errcode"
)

// infoError is a cause that carries the "info" object of IoT Hub's newer error body, such as the
// timeout of a direct method that found its device offline (methods.NotOnline).
type infoError interface {
	error
	ErrorInfo() map[string]any
}

// writeInfoError writes the error body IoT Hub uses for direct method failures: the classic
// envelope whose Message is itself a JSON object (spec/service-api.md 3.1, format 2):
//
//	{"Message":"{\"errorCode\":404103,\"trackingId\":\"<id>-TimeStamp:<time>\",
//	  \"message\":\"Timed out waiting for device to connect.\",\"info\":{\"timeout\":\"00:00:00\"},
//	  \"timestampUtc\":\"2024-03-14T09:54:49.6536567Z\"}","ExceptionMessage":""}
//
// The C# SDK reads errorCode from it; the Node SDK falls back on the HTTP status. The
// iothub-errorcode header is the same as for every other error.
func writeInfoError(w http.ResponseWriter, e *errcode.Error, msg string, info map[string]any, trackingID string) {
	now := time.Now().UTC()
	inner, err := json.Marshal(struct {
		ErrorCode    int            `json:"errorCode"`
		TrackingID   string         `json:"trackingId"`
		Message      string         `json:"message"`
		Info         map[string]any `json:"info"`
		TimestampUTC string         `json:"timestampUtc"`
	}{int(e.Code), trackingID + "-TimeStamp:" + now.Format("01/02/2006 15:04:05"), msg, info,
		now.Format("2006-01-02T15:04:05.0000000Z")})
	if err != nil {
		inner = []byte(`{"errorCode":` + e.Code.String() + `}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("iothub-errorcode", e.Code.Name())
	h.Set("x-ms-request-id", trackingID)
	w.WriteHeader(e.Code.HTTPStatus())
	_ = json.NewEncoder(w).Encode(errorBody{Message: string(inner)})
}
