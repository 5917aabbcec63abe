package diag

// DecodeWireForTest exposes the stored-record decoder to the fuzz test.
var DecodeWireForTest = decodeWire
