// Package twin keeps device and module twins: tags, desired and reported properties with their
// $metadata and $version, stored in an engine bucket whose revision is the twin's etag.
//
// A twin exists as soon as its identity does: reading the twin of a registered device that has
// never been written gives a fresh twin (version 1, desired and reported $version 1, empty
// sections). Every write is a compare-and-set on the stored document, so concurrent writers on
// any node never lose an update; a service write with If-Match fails with 412001 when the twin
// changed in between.
//
//	store, err := twin.Open(ctx, eng, twin.Config{Registry: reg})
//	tw, err := store.Get(ctx, "thermostat-1", "")
//	tw, err = store.Update(ctx, "thermostat-1", "", []byte(`{"properties":{"desired":{"fan":true}}}`), tw.ETag)
//	v, err := store.UpdateReported(ctx, "thermostat-1", "", generationID, []byte(`{"fan":true}`))
//
// The engine publishes every stored twin on the identity's "twin" subject
// (engine.DeviceSubject), so the node that holds a device's connection sees each desired change
// in order and turns it into the device's notification with [Store.DesiredNotification].
//
// Rules as IoT Hub applies them (spec/device-protocol.md section 6): tags 8 KB, desired and
// reported 32 KB each as [Size] counts them (403100 when exceeded); keys of 1 to 1024 bytes
// without '.', '$', spaces or control characters; strings up to 4 KB; integers within ±2^52;
// objects nested at most 10 levels (400004 otherwise). A null in a patch deletes the key. The
// twin's version counts changes to tags and desired properties; desired and reported each count
// their own changes in $version.
//
// Identity fields of a twin (status, connectionState, lastActivityTime, authenticationType,
// x509Thumbprint, capabilities, deviceScope) are read from the registry when the twin is read;
// only tags and properties live in the twin's document. A stored document remembers the
// generation id of the identity it belongs to, so a twin left behind by a deleted device never
// shows up on a new device of the same id.
package twin
