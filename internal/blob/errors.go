package blob

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/roost-iot/roost/internal/errcode"
)

// StorageError is the Blob service's view of a failure: the HTTP status and the error code its
// XML error body and x-ms-error-code header carry (AuthenticationFailed, InvalidBlockList, ...).
// It is the cause inside the [*errcode.Error] every operation of this package returns, so the
// blob endpoint answers in the Blob service's format while diagnostic records keep IoT Hub's
// six-digit codes.
type StorageError struct {
	Status int
	Code   string
	// Detail, when set, goes into the body's AuthenticationErrorDetail element.
	Detail string
}

func (e *StorageError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Code) }

// Storage error codes the endpoint uses, as the Blob service spells them.
const (
	CodeAuthenticationFailed          = "AuthenticationFailed"
	CodeAuthorizationPermission       = "AuthorizationPermissionMismatch"
	CodeAuthorizationResourceType     = "AuthorizationResourceTypeMismatch"
	CodeAuthorizationProtocolMismatch = "AuthorizationProtocolMismatch"
	CodeAuthorizationSourceIP         = "AuthorizationSourceIPMismatch"
	CodeBlobNotFound                  = "BlobNotFound"
	CodeContainerNotFound             = "ContainerNotFound"
	CodeInvalidBlockList              = "InvalidBlockList"
	CodeInvalidBlobOrBlock            = "InvalidBlobOrBlock"
	CodeInvalidQueryParameterValue    = "InvalidQueryParameterValue"
	CodeMissingRequiredQueryParameter = "MissingRequiredQueryParameter"
	CodeInvalidHeaderValue            = "InvalidHeaderValue"
	CodeMissingRequiredHeader         = "MissingRequiredHeader"
	CodeMissingContentLength          = "MissingContentLengthHeader"
	CodeInvalidXMLDocument            = "InvalidXmlDocument"
	CodeInvalidResourceName           = "InvalidResourceName"
	CodeMd5Mismatch                   = "Md5Mismatch"
	CodeRequestBodyTooLarge           = "RequestBodyTooLarge"
	CodeBlockCountExceedsLimit        = "BlockCountExceedsLimit"
	CodeConditionNotMet               = "ConditionNotMet"
	CodeBlobAlreadyExists             = "BlobAlreadyExists"
	CodeInvalidRange                  = "InvalidRange"
	CodeUnsupportedHTTPVerb           = "UnsupportedHttpVerb"
	CodeIncompleteBody                = "IncompleteBody"
	CodeOperationTimedOut             = "OperationTimedOut"
	CodeInternalError                 = "InternalError"
	CodeServerBusy                    = "ServerBusy"
)

// Fail returns the error for a Blob service failure: an [*errcode.Error] whose code is the
// generic IoT Hub code of the status (for diagnostic records) and whose cause is the
// [*StorageError] the endpoint answers with. msg is safe to show the client.
func Fail(status int, code, format string, args ...any) *errcode.Error {
	return &errcode.Error{Code: genericCode(status), Msg: fmt.Sprintf(format, args...), Err: &StorageError{Status: status, Code: code}}
}

// authFail is an AuthenticationFailed error with a detail, as the Blob service writes it.
func authFail(detail string) *errcode.Error {
	return &errcode.Error{
		Code: errcode.GenericForbidden,
		Msg:  "Server failed to authenticate the request. Make sure the value of the Authorization header or the SAS is formed correctly including the signature.",
		Err:  &StorageError{Status: http.StatusForbidden, Code: CodeAuthenticationFailed, Detail: detail},
	}
}

// internal wraps an unexpected failure (disk, engine) as a 500 InternalError.
func internal(err error, format string, args ...any) *errcode.Error {
	return &errcode.Error{Code: errcode.ServerError, Msg: fmt.Sprintf(format, args...),
		Err: errors.Join(&StorageError{Status: http.StatusInternalServerError, Code: CodeInternalError}, err)}
}

func genericCode(status int) errcode.Code {
	switch status {
	case http.StatusBadRequest, http.StatusLengthRequired, http.StatusRequestedRangeNotSatisfiable:
		return errcode.GenericBadRequest
	case http.StatusForbidden:
		return errcode.GenericForbidden
	case http.StatusNotFound:
		return errcode.GenericNotFound
	case http.StatusMethodNotAllowed:
		return errcode.GenericMethodNotAllowed
	case http.StatusConflict:
		return errcode.GenericConflict
	case http.StatusPreconditionFailed:
		return errcode.GenericPreconditionFailed
	case http.StatusRequestEntityTooLarge:
		return errcode.GenericRequestEntityTooLarge
	case http.StatusRequestTimeout:
		return errcode.RequestTimeout
	case http.StatusServiceUnavailable:
		return errcode.ServerBusy
	}
	return errcode.ServerError
}

// AsStorageError returns the Blob service view of err: its [*StorageError] cause, or 500
// InternalError for any other error.
func AsStorageError(err error) *StorageError {
	var se *StorageError
	if errors.As(err, &se) {
		return se
	}
	return &StorageError{Status: http.StatusInternalServerError, Code: CodeInternalError}
}
