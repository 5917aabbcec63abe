package mqtt

import "github.com/roost-iot/roost/internal/engine"

// startMethods makes the connection reachable for direct method calls from any node.
func (c *conn) startMethods() error { return nil }

// onMethodRequest forwards a direct method call to the device.
func (c *conn) onMethodRequest(engine.Inbound) {}

// onMethodResponse passes the device's answer back to the caller.
func (c *conn) onMethodResponse(parsedTopic, publish) error { return nil }

// closeMethods fails the calls still waiting for this connection's device.
func (c *conn) closeMethods() {}
