package sas

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
)

// Key sizes in bytes, before base64. IoT Hub generates 32-byte keys (44 base64 characters);
// the Node end-to-end tests supply 36-byte ones. The accepted range is Roost's choice: IoT
// Hub's own limits are unconfirmed (spec/service-api.md §2.2).
const (
	KeySize    = 32
	MinKeySize = 16
	MaxKeySize = 64
)

// GenerateKey returns a new random key of [KeySize] bytes in standard base64 (44 characters).
func GenerateKey() (string, error) {
	var b [KeySize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("sas: generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b[:]), nil
}

// ValidKey reports whether key is standard, padded base64 (no line breaks) of [MinKeySize] to
// [MaxKeySize] bytes.
func ValidKey(key string) bool {
	if len(key) > base64.StdEncoding.EncodedLen(MaxKeySize) || strings.ContainsAny(key, "\r\n") {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(key)
	return err == nil && len(b) >= MinKeySize && len(b) <= MaxKeySize
}
