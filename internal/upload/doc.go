// Package upload runs IoT Hub's file uploads: a device asks for a SAS URI for a blob, uploads
// the file to storage with it, and notifies the hub, which queues a file upload notification for
// the service side.
//
//	svc, _ := upload.Open(ctx, upload.Config{Engine: eng, Store: store, Queue: queue, Diag: dw})
//	defer svc.Close()
//	st, err := svc.Start(ctx, upload.Request{DeviceID: "cam-1", BlobName: "img.jpg"})
//	// the device PUTs https://{st.HostName}/{st.ContainerName}/{st.BlobName}{st.SASToken}
//	_, err = svc.Complete(ctx, upload.Result{DeviceID: "cam-1", CorrelationID: st.CorrelationID, IsSuccess: &ok})
//	n, found, err := queue.Receive(ctx) // {deviceId, blobUri, blobName, lastUpdatedTime, ...}
//	err = queue.Complete(ctx, n.LockToken)
//
// IoT Hub's rules hold across nodes, because every fact is in the engine: at most 10 uploads in
// progress per device (the 11th is 403006), an upload stops counting when its completion is
// notified or its SAS expires, an unknown correlation id is 400015 and an expired one 400016.
// Storage is an [upload.Store]: Roost's built-in blob store or an external Azure Storage account
// (package blob).
//
// Failures that no request reports (an upload whose SAS expired, a device-reported failure, a
// success whose blob is missing) are written as FileUploadOperations records; request failures
// are recorded by the edge, with [Failure.Record].
package upload
