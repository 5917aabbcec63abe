package mqtt

import "github.com/roost-iot/roost/internal/engine"

// startC2D begins delivering the device's cloud-to-device queue.
func (c *conn) startC2D() error { return nil }

// onC2DNotify learns that a message was queued for the device.
func (c *conn) onC2DNotify(engine.Inbound) {}

// onPuback completes the cloud-to-device message delivered with packet id.
func (c *conn) onPuback(uint16) error { return nil }

// closeC2D releases the connection's locks on cloud-to-device messages.
func (c *conn) closeC2D() {}
