package errcode

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestNewAndWrap(t *testing.T) {
	tests := []struct {
		name    string
		err     *Error
		wantMsg string
		wantStr string
		wantErr error
	}{
		{
			name:    "new",
			err:     New(DeviceNotFound, "device %q is not registered", "d1"),
			wantMsg: `device "d1" is not registered`,
			wantStr: `404001 DeviceNotFound: device "d1" is not registered`,
		},
		{
			name:    "wrap",
			err:     Wrap(ServerError, io.ErrUnexpectedEOF, "read twin %s", "d1"),
			wantMsg: "read twin d1",
			wantStr: "500001 ServerError: read twin d1: unexpected EOF",
			wantErr: io.ErrUnexpectedEOF,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err.Msg != tt.wantMsg {
				t.Errorf("Msg = %q, want %q", tt.err.Msg, tt.wantMsg)
			}
			if got := tt.err.Error(); got != tt.wantStr {
				t.Errorf("Error() = %q, want %q", got, tt.wantStr)
			}
			if got := tt.err.Unwrap(); got != tt.wantErr {
				t.Errorf("Unwrap() = %v, want %v", got, tt.wantErr)
			}
			if tt.wantErr != nil && !errors.Is(tt.err, tt.wantErr) {
				t.Errorf("errors.Is(err, %v) = false, want true", tt.wantErr)
			}
		})
	}
}

func TestAs(t *testing.T) {
	notFound := New(DeviceNotFound, "device %q is not registered", "d1")
	plain := errors.New("disk on fire")
	tests := []struct {
		name     string
		err      error
		wantCode Code
		wantSame *Error // the *Error As must return itself; nil when As makes a new one
		wantErr  error  // the cause of a new one
	}{
		{"typed", notFound, DeviceNotFound, notFound, nil},
		{"wrapped once", fmt.Errorf("get twin: %w", notFound), DeviceNotFound, notFound, nil},
		{"wrapped twice", fmt.Errorf("api: %w", fmt.Errorf("get twin: %w", notFound)), DeviceNotFound, notFound, nil},
		{"joined", errors.Join(io.EOF, notFound), DeviceNotFound, notFound, nil},
		{"plain", plain, ServerError, nil, plain},
		{"plain wrapped", fmt.Errorf("save: %w", plain), ServerError, nil, plain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := As(tt.err)
			if got == nil {
				t.Fatal("As() = nil")
			}
			if got.Code != tt.wantCode {
				t.Errorf("As().Code = %d, want %d", got.Code, tt.wantCode)
			}
			if tt.wantSame != nil && got != tt.wantSame {
				t.Errorf("As() = %p, want the *Error in the chain %p", got, tt.wantSame)
			}
			if tt.wantSame == nil {
				if !errors.Is(got, tt.wantErr) {
					t.Errorf("As() lost the cause: %v", got)
				}
				if got.Msg != "internal server error" {
					t.Errorf("As().Msg = %q: a plain error's text must not reach the client", got.Msg)
				}
			}
		})
	}
	if got := As(nil); got != nil {
		t.Errorf("As(nil) = %v, want nil", got)
	}
}

func TestStdlibErrorsThroughWrapping(t *testing.T) {
	inner := New(ModuleNotFound, "module %q not found", "m1")
	err := fmt.Errorf("handler: %w", fmt.Errorf("registry: %w", inner))

	var target *Error
	if !errors.As(err, &target) {
		t.Fatal("errors.As(err, *Error) = false, want true")
	}
	if target != inner {
		t.Errorf("errors.As found %p, want %p", target, inner)
	}
	if !errors.Is(err, inner) {
		t.Error("errors.Is(err, inner) = false, want true")
	}
}

func TestIs(t *testing.T) {
	inner := New(ModuleNotFound, "module %q not found", "m1")
	wrapped := fmt.Errorf("handler: %w", inner)
	tests := []struct {
		name string
		err  error
		code Code
		want bool
	}{
		{"same code", inner, ModuleNotFound, true},
		{"wrapped", wrapped, ModuleNotFound, true},
		{"other code", wrapped, DeviceNotFound, false},
		// Is looks for a typed error only; As's 500001 fallback is not a match.
		{"plain", errors.New("x"), ServerError, false},
		{"nil", nil, ServerError, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Is(tt.err, tt.code); got != tt.want {
				t.Errorf("Is(%v, %d) = %v, want %v", tt.err, tt.code, got, tt.want)
			}
		})
	}
}
