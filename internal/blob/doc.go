// Package blob is the storage side of file uploads: Roost's built-in store that speaks the part
// of the Azure Blob REST API device SDKs use to upload (Put Blob, Put Block, Put Block List, Get
// Blob, Get Blob Properties), and the client of an external Azure Storage account for hubs
// configured with a storage connection string.
//
// Both sides authorize blob requests with Blob service SAS tokens ([SAS]): the built-in store
// signs them with an account key that it keeps in the engine, so every node honours a token any
// node issued; an external account's tokens are signed with its own key, as IoT Hub does.
//
//	ix, _ := blob.OpenIndex(ctx, eng)
//	st, _ := blob.OpenLocal(ctx, blob.LocalConfig{Engine: eng, Index: ix, Account: "myhub",
//		Container: "fileupload", Host: "myhub.local"})
//	g := st.Grant("dev1/photo.jpg", time.Now().Add(time.Hour)) // hostName, containerName, sasToken
//	_ = st.Authorize(r.URL.Query(), "dev1/photo.jpg", blob.PermWrite, ip)
//	_, _ = st.StageBlock(ctx, "dev1/photo.jpg", id, r.Body, r.ContentLength, nil)
//	p, _ := st.CommitBlockList(ctx, "dev1/photo.jpg", refs, blob.Headers{}, blob.Conditions{})
//
// The built-in store keeps everything in the engine (content in a stream of chunks, uncommitted
// blocks in a staging bucket, committed versions in the [Index]), so every node of a cluster
// serves every blob, whichever nodes its blocks went through. Writes are atomic: a committed
// version becomes visible only when its index entry is written, with compare-and-set. Uncommitted
// blocks are removed a day after they were written ([Local.GC]). [Local] explains the layout.
//
// Every operation returns an [*errcode.Error] whose cause is a [*StorageError]: the blob endpoint
// answers with the Blob service's status and error code, diagnostic records keep a six-digit
// code.
package blob
