package mqtt

import (
	"slices"

	"github.com/roost-iot/roost/internal/engine"
)

// The features beyond telemetry (cloud-to-device messages, twins, direct methods) plug into a
// connection through the hooks below, each implemented in the feature's own file:
//
//	c2d.go      onPuback, C2D delivery after the device subscribes to its devicebound filter
//	twin.go     onTwin (GET and reported PATCH), desired-property pushes
//	methods.go  onMethodResponse, method requests arriving from any node
//
// Messages for a connection arrive on its identity's subjects (engine.DeviceSubject with the
// kind "c2d", "twin" or "method"); the server's dispatcher hands each to onCluster, which must
// not block: it runs on the one goroutine that serves every connection of the node.

// listen registers the connection for cluster messages of one kind.
func (c *conn) listen(kind string) error {
	subj := engine.DeviceSubject(c.id.DeviceID, c.id.ModuleID, kind)
	if slices.Contains(c.listening, subj) {
		return nil
	}
	if err := c.s.register(c, subj); err != nil {
		return err
	}
	c.listening = append(c.listening, subj)
	return nil
}

// onSubscribing starts, before the SUBACK is queued, a feature that must be reachable from any
// node once the device sees its SUBACK.
func (c *conn) onSubscribing(filter string) error {
	if filter == "$iothub/methods/POST/#" {
		return c.startMethods()
	}
	return nil
}

// onSubscribed starts the feature behind a topic filter the device just subscribed to.
func (c *conn) onSubscribed(filter string) error {
	switch filter {
	case "$iothub/twin/PATCH/properties/desired/#":
		return c.startDesired()
	case "$iothub/twin/res/#":
		return nil
	}
	if c.id.ModuleID == "" && filter == "devices/"+c.id.DeviceID+"/messages/devicebound/#" {
		return c.startC2D()
	}
	return nil
}

// onUnsubscribed stops the feature behind a topic filter the device unsubscribed from.
func (c *conn) onUnsubscribed(filter string) {
	switch filter {
	case "$iothub/methods/POST/#":
		c.stopMethods()
	case "$iothub/twin/PATCH/properties/desired/#":
		c.stopDesired()
	}
	if c.id.ModuleID == "" && filter == "devices/"+c.id.DeviceID+"/messages/devicebound/#" {
		c.stopC2D()
	}
}

// onCluster handles a message for this connection from any node.
func (c *conn) onCluster(kind string, in engine.Inbound) {
	switch kind {
	case "method":
		c.onMethodRequest(in)
	case "twin":
		c.onDesired(in)
	case "c2d":
		c.onC2DNotify(in)
	}
}

// onClose releases what the features hold for the connection (in-flight methods, C2D locks).
func (c *conn) onClose() {
	c.closeMethods()
	c.closeC2D()
}
