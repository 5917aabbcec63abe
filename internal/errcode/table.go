package errcode

// The codes below are IoT Hub's six-digit codes in code order, each named after its wire name (the
// spelling of the swagger file and the C# SDK, used on the wire by REST error bodies and the
// iothub-errorcode response header). The catalog table after them gives every code its summary
// and, for the ones users meet, an explanation.
//
// Left out on purpose: names whose number is not known (the DPS names and most of the 500-family
// swagger names), and 404003 PartitionNotFound, an old number of 503003 PartitionNotFound found only
// in a 2021 C# enum. Keeping it would give one wire name two codes and make [Find] ambiguous.
const (
	// 400 Bad Request.

	// GenericBadRequest is 400000: the request is malformed and no more specific code applies.
	GenericBadRequest Code = 400000
	// InvalidProtocolVersion is 400001: the api-version is missing or not supported.
	InvalidProtocolVersion Code = 400001
	// DeviceInvalidResultCount is 400002: invalid result count; defined by the SDKs, never sent by
	// the service.
	DeviceInvalidResultCount Code = 400002
	// InvalidOperation is 400003: the operation is not valid here, e.g. an AMQP target without a
	// device id.
	InvalidOperation Code = 400003
	// ArgumentInvalid is 400004: a request argument or body field has an invalid value.
	ArgumentInvalid Code = 400004
	// ArgumentNull is 400005: a required argument is missing or null.
	ArgumentNull Code = 400005
	// IotHubFormatError is 400006: the request body cannot be parsed or has the wrong shape.
	IotHubFormatError Code = 400006
	// DeviceStorageEntitySerializationError is 400007: a stored identity could not be serialized or
	// deserialized.
	DeviceStorageEntitySerializationError Code = 400007
	// BlobContainerValidationError is 400008: the blob container is invalid or cannot be reached.
	BlobContainerValidationError Code = 400008
	// ImportWarningExistsError is 400009: the import job finished with warnings.
	ImportWarningExistsError Code = 400009
	// InvalidSchemaVersion is 400010: the schema version is not supported.
	InvalidSchemaVersion Code = 400010
	// DeviceDefinedMultipleTimes is 400011: an id appears more than once in a bulk request.
	DeviceDefinedMultipleTimes Code = 400011
	// DeserializationError is 400012: the request could not be deserialized.
	DeserializationError Code = 400012
	// BulkRegistryOperationFailure is 400013: at least one device in a bulk registry request failed.
	BulkRegistryOperationFailure Code = 400013
	// DefaultStorageEndpointNotConfigured is 400014: a file upload was requested but no storage is
	// configured.
	DefaultStorageEndpointNotConfigured Code = 400014
	// InvalidFileUploadCorrelationId is 400015: the file-upload correlation id is unknown.
	InvalidFileUploadCorrelationId Code = 400015
	// ExpiredFileUploadCorrelationId is 400016: the file-upload correlation id has expired.
	ExpiredFileUploadCorrelationId Code = 400016
	// InvalidStorageEndpoint is 400017: the storage endpoint is invalid.
	InvalidStorageEndpoint Code = 400017
	// InvalidMessagingEndpoint is 400018: the messaging endpoint is invalid.
	InvalidMessagingEndpoint Code = 400018
	// InvalidFileUploadCompletionStatus is 400019: the file-upload completion status is invalid.
	InvalidFileUploadCompletionStatus Code = 400019
	// InvalidStorageEndpointOrBlob is 400020: storage refused to create the blob (one SDK enum calls
	// this code IotHubSuspended).
	InvalidStorageEndpointOrBlob Code = 400020
	// RequestCanceled is 400021: the request was cancelled.
	RequestCanceled Code = 400021
	// InvalidStorageEndpointProperty is 400022: a storage endpoint property is invalid.
	InvalidStorageEndpointProperty Code = 400022
	// EtagDoesNotMatch is 400023: the etag does not match (the 400 variant of 412001).
	EtagDoesNotMatch Code = 400023
	// RequestTimedOut is 400024: the request timed out.
	RequestTimedOut Code = 400024
	// UnsupportedOperationOnReplica is 400025: the operation is not supported on a replica.
	UnsupportedOperationOnReplica Code = 400025
	// NullMessage is 400026: the message is null.
	NullMessage Code = 400026
	// ConnectionForcefullyClosedOnNewConnection is 400027: the same identity connected again, so the
	// older connection was closed.
	ConnectionForcefullyClosedOnNewConnection Code = 400027
	// InvalidDeviceScope is 400028: the device scope is invalid.
	InvalidDeviceScope Code = 400028
	// ConnectionForcefullyClosedOnFaultInjection is 400029: the connection was closed for
	// maintenance or fault injection; reconnecting works.
	ConnectionForcefullyClosedOnFaultInjection Code = 400029
	// ConnectionRejectedOnFaultInjection is 400030: the connection was refused during maintenance;
	// retrying works.
	ConnectionRejectedOnFaultInjection Code = 400030
	// InvalidEndpointAuthenticationType is 400031: the endpoint's authentication type is invalid.
	InvalidEndpointAuthenticationType Code = 400031
	// ManagedIdentityNotEnabled is 400032: a managed identity is required but not enabled.
	ManagedIdentityNotEnabled Code = 400032
	// InvalidPolicyKey is 400035: the shared access policy key is invalid.
	InvalidPolicyKey Code = 400035
	// BulkRegenerateDeviceKeyOperationFailure is 400036: regenerating the keys of a set of devices
	// failed.
	BulkRegenerateDeviceKeyOperationFailure Code = 400036
	// InvalidRouteTestInput is 400100: the route test input is invalid.
	InvalidRouteTestInput Code = 400100
	// InvalidSourceOnRoute is 400101: the route's source is invalid.
	InvalidSourceOnRoute Code = 400101
	// RoutingNotEnabled is 400102: message routing is not enabled.
	RoutingNotEnabled Code = 400102
	// InvalidContentEncodingOrType is 400103: the message's content encoding or content type does
	// not suit routing.
	InvalidContentEncodingOrType Code = 400103
	// CannotRegisterModuleToModule is 400301: a module cannot be registered under another module.
	CannotRegisterModuleToModule Code = 400301
	// TenantHubRoutingNotEnabled is 400302: routing is not enabled for the tenant hub.
	TenantHubRoutingNotEnabled Code = 400302
	// InvalidConfigurationTargetCondition is 400401: the configuration's targetCondition is invalid.
	InvalidConfigurationTargetCondition Code = 400401
	// InvalidConfigurationContent is 400402: the configuration content is invalid.
	InvalidConfigurationContent Code = 400402
	// CannotModifyImmutableConfigurationContent is 400403: a configuration's content cannot change
	// after it is created.
	CannotModifyImmutableConfigurationContent Code = 400403
	// InvalidConfigurationCustomMetricsQuery is 400404: a configuration's custom metric query is
	// invalid.
	InvalidConfigurationCustomMetricsQuery Code = 400404
	// InvalidPnPInterfaceDefinition is 400501: the Plug and Play interface definition is invalid.
	InvalidPnPInterfaceDefinition Code = 400501
	// InvalidPnPDesiredProperties is 400502: the Plug and Play desired properties are invalid.
	InvalidPnPDesiredProperties Code = 400502
	// InvalidPnPReportedProperties is 400503: the Plug and Play reported properties are invalid.
	InvalidPnPReportedProperties Code = 400503
	// InvalidPnPWritableReportedProperties is 400504: the Plug and Play writable reported properties
	// are invalid.
	InvalidPnPWritableReportedProperties Code = 400504
	// InvalidDigitalTwinJsonPatch is 400505: the digital twin JSON patch is invalid.
	InvalidDigitalTwinJsonPatch Code = 400505
	// InvalidDigitalTwinPayload is 400506: the digital twin payload is invalid.
	InvalidDigitalTwinPayload Code = 400506
	// InvalidDigitalTwinPatch is 400507: the digital twin patch is invalid.
	InvalidDigitalTwinPatch Code = 400507
	// InvalidDigitalTwinPatchPath is 400508: a path in the digital twin patch is invalid.
	InvalidDigitalTwinPatchPath Code = 400508

	// 401 Unauthorized.

	// GenericUnauthorized is 401000: the request is not authorized.
	GenericUnauthorized Code = 401000
	// IotHubNotFound is 401001: the hub named in the request does not exist.
	IotHubNotFound Code = 401001
	// IotHubUnauthorizedAccess is 401002: authentication failed: the token had expired, or the
	// device is unknown or disabled.
	IotHubUnauthorizedAccess Code = 401002
	// IotHubUnauthorized is 401003: the credential was rejected, or a live connection's token
	// expired.
	IotHubUnauthorized Code = 401003
	// ElasticPoolNotFound is 401004: the elastic pool was not found (Azure-internal).
	ElasticPoolNotFound Code = 401004
	// SystemModuleModifyUnauthorizedAccess is 401100: an IoT Edge system module may not be modified
	// this way.
	SystemModuleModifyUnauthorizedAccess Code = 401100

	// 403 Forbidden.

	// GenericForbidden is 403000: the request is forbidden.
	GenericForbidden Code = 403000
	// IotHubSuspended is 403001: the hub is suspended (one SDK enum calls this code
	// JobQuotaExceeded).
	IotHubSuspended Code = 403001
	// IotHubQuotaExceeded is 403002: the daily message quota is used up; it resets at 00:00 UTC.
	IotHubQuotaExceeded Code = 403002
	// JobQuotaExceeded is 403003: too many jobs are running, or an import/export job is already
	// active.
	JobQuotaExceeded Code = 403003
	// DeviceMaximumQueueDepthExceeded is 403004: the device already has the maximum of 50 cloud-to-
	// device messages queued.
	DeviceMaximumQueueDepthExceeded Code = 403004
	// IotHubMaxCbsTokenExceeded is 403005: too many CBS tokens were put on the AMQP connection.
	IotHubMaxCbsTokenExceeded Code = 403005
	// DeviceMaximumActiveFileUploadLimitExceeded is 403006: the device already has 10 file uploads
	// in progress.
	DeviceMaximumActiveFileUploadLimitExceeded Code = 403006
	// DeviceMaximumQueueSizeExceeded is 403007: the device's queue is over its size limit.
	DeviceMaximumQueueSizeExceeded Code = 403007
	// RoutingEndpointResponseForbidden is 403008: a routing endpoint refused the message as
	// forbidden.
	RoutingEndpointResponseForbidden Code = 403008
	// InvalidMessageExpiryTime is 403009: the message expiry time is invalid.
	InvalidMessageExpiryTime Code = 403009
	// OperationNotAvailableInCurrentTier is 403010: the feature is not available in the hub's tier.
	OperationNotAvailableInCurrentTier Code = 403010
	// KeyEncryptionKeyRevoked is 403011: the customer-managed encryption key was revoked.
	KeyEncryptionKeyRevoked Code = 403011
	// DeviceDisabled is 403012: the device is disabled.
	DeviceDisabled Code = 403012
	// DeviceModelMaxPropertiesExceeded is 403100: a twin's tags, desired or reported properties
	// would be over their size limit (the name comes from the SDKs' enum).
	DeviceModelMaxPropertiesExceeded Code = 403100
	// DeviceModelMaxIndexablePropertiesExceeded is 403101: the device model has too many indexable
	// properties.
	DeviceModelMaxIndexablePropertiesExceeded Code = 403101
	// DeviceMaximumInflightMethodExceeded is 403800: too many direct method calls are in flight for
	// the device.
	DeviceMaximumInflightMethodExceeded Code = 403800

	// 404 Not Found.

	// GenericNotFound is 404000: the resource was not found.
	GenericNotFound Code = 404000
	// DeviceNotFound is 404001: no device with that id is registered.
	DeviceNotFound Code = 404001
	// JobNotFound is 404002: no job with that id exists.
	JobNotFound Code = 404002
	// QuotaMetricNotFound is 404004: the quota metric was not found.
	QuotaMetricNotFound Code = 404004
	// SystemPropertyNotFound is 404005: the system property was not found.
	SystemPropertyNotFound Code = 404005
	// AmqpAddressNotFound is 404006: the AMQP link address is not known.
	AmqpAddressNotFound Code = 404006
	// RoutingEndpointResponseNotFound is 404007: a routing endpoint answered not found.
	RoutingEndpointResponseNotFound Code = 404007
	// CertificateNotFound is 404008: the certificate was not found.
	CertificateNotFound Code = 404008
	// ElasticPoolTenantHubNotFound is 404009: the elastic pool's tenant hub was not found (Azure-
	// internal).
	ElasticPoolTenantHubNotFound Code = 404009
	// ModuleNotFound is 404010: the device has no module with that id.
	ModuleNotFound Code = 404010
	// AzureTableStoreNotFound is 404011: an internal table store was not found (Azure-internal).
	AzureTableStoreNotFound Code = 404011
	// IotHubFailingOver is 404012: the hub is failing over to another region.
	IotHubFailingOver Code = 404012
	// FeatureNotSupported is 404013: the feature is not supported.
	FeatureNotSupported Code = 404013
	// DigitalTwinInterfaceNotFound is 404014: the digital twin interface was not found.
	DigitalTwinInterfaceNotFound Code = 404014
	// QueryStoreClusterNotFound is 404101: the query store cluster was not found (Azure-internal).
	QueryStoreClusterNotFound Code = 404101
	// DeviceNotOnline is 404103: the device is not connected or has no direct method handler.
	DeviceNotOnline Code = 404103
	// DeviceConnectionClosedRemotely is 404104: the device's connection ended without a clean
	// disconnect.
	DeviceConnectionClosedRemotely Code = 404104
	// ConfigurationNotFound is 404301: no configuration with that id exists.
	ConfigurationNotFound Code = 404301
	// GroupNotFound is 404302: the group was not found.
	GroupNotFound Code = 404302
	// DigitalTwinModelNotFound is 404401: the digital twin model was not found.
	DigitalTwinModelNotFound Code = 404401
	// InterfaceNameModelNotFound is 404402: no model is known for the interface name.
	InterfaceNameModelNotFound Code = 404402

	// 405 Method Not Allowed.

	// GenericMethodNotAllowed is 405000: the HTTP method is not allowed on this resource.
	GenericMethodNotAllowed Code = 405000
	// OperationNotAllowedInCurrentState is 405102: the operation is not allowed in the resource's
	// current state.
	OperationNotAllowedInCurrentState Code = 405102
	// ImportDevicesNotSupported is 405103: importing devices is not supported.
	ImportDevicesNotSupported Code = 405103
	// BulkAddDevicesNotSupported is 405104: adding devices in bulk is not supported.
	BulkAddDevicesNotSupported Code = 405104

	// 408 Request Timeout.

	// RequestTimeout is 408000: the request timed out in the client; the service never sends this
	// code.
	RequestTimeout Code = 408000

	// 409 Conflict.

	// GenericConflict is 409000: the request conflicts with the resource's current state.
	GenericConflict Code = 409000
	// DeviceAlreadyExists is 409001: a device with that id already exists.
	DeviceAlreadyExists Code = 409001
	// LinkCreationConflict is 409002: a new connection for the same identity replaced the existing
	// one.
	LinkCreationConflict Code = 409002
	// CallbackSubscriptionConflict is 409003: the callback subscription conflicts with an existing
	// one.
	CallbackSubscriptionConflict Code = 409003
	// ModelAlreadyExists is 409101: the model already exists.
	ModelAlreadyExists Code = 409101
	// DeviceLocked is 409102: the device is locked by another operation.
	DeviceLocked Code = 409102
	// DeviceJobAlreadyExists is 409103: the device already has this job.
	DeviceJobAlreadyExists Code = 409103
	// JobAlreadyExists is 409104: a job with that id already exists.
	JobAlreadyExists Code = 409104
	// ModuleAlreadyExistsOnDevice is 409301: the device already has a module with that id.
	ModuleAlreadyExistsOnDevice Code = 409301
	// ConfigurationAlreadyExists is 409401: a configuration with that id already exists.
	ConfigurationAlreadyExists Code = 409401
	// ApplyConfigurationAlreadyInProgressOnDevice is 409402: a configuration is already being
	// applied to the device.
	ApplyConfigurationAlreadyInProgressOnDevice Code = 409402
	// DigitalTwinModelAlreadyExists is 409501: the digital twin model already exists.
	DigitalTwinModelAlreadyExists Code = 409501
	// DigitalTwinModelExistsWithOtherModelType is 409502: the digital twin model exists with another
	// model type.
	DigitalTwinModelExistsWithOtherModelType Code = 409502
	// InterfaceNameModelAlreadyExists is 409503: a model for that interface name already exists.
	InterfaceNameModelAlreadyExists Code = 409503

	// 412 Precondition Failed.

	// GenericPreconditionFailed is 412000: a precondition of the request failed.
	GenericPreconditionFailed Code = 412000
	// PreconditionFailed is 412001: the If-Match etag is not the entity's current etag.
	PreconditionFailed Code = 412001
	// DeviceMessageLockLost is 412002: the device settled a cloud-to-device message after its lock
	// had expired.
	DeviceMessageLockLost Code = 412002
	// JobRunPreconditionFailed is 412003: a precondition for running the job failed.
	JobRunPreconditionFailed Code = 412003
	// InflightMessagesInLink is 412004: the link still has messages in flight.
	InflightMessagesInLink Code = 412004

	// 413 Content Too Large.

	// GenericRequestEntityTooLarge is 413000: the request body is too large.
	GenericRequestEntityTooLarge Code = 413000
	// MessageTooLarge is 413001: the message is over the size limit.
	MessageTooLarge Code = 413001
	// TooManyDevices is 413002: a bulk registry request lists more than 100 devices.
	TooManyDevices Code = 413002
	// TooManyModulesOnDevice is 413003: the device has reached its module limit.
	TooManyModulesOnDevice Code = 413003
	// ConfigurationCountLimitExceeded is 413101: the hub has reached its configuration limit.
	ConfigurationCountLimitExceeded Code = 413101
	// DigitalTwinModelCountLimitExceeded is 413201: the digital twin model limit is reached.
	DigitalTwinModelCountLimitExceeded Code = 413201
	// InterfaceNameCompressionModelCountLimitExceeded is 413202: the interface-name compression
	// model limit is reached.
	InterfaceNameCompressionModelCountLimitExceeded Code = 413202

	// 415 Unsupported Media Type.

	// GenericUnsupportedMediaType is 415000: the Content-Type is not supported.
	GenericUnsupportedMediaType Code = 415000
	// IncompatibleDataType is 415101: the data type is incompatible.
	IncompatibleDataType Code = 415101

	// 429 Too Many Requests.

	// GenericTooManyRequests is 429000: too many requests.
	GenericTooManyRequests Code = 429000
	// ThrottlingException is 429001: an operation stayed over its rate limit until the throttling
	// backlog overflowed.
	ThrottlingException Code = 429001
	// ThrottleBacklogLimitExceeded is 429002: the throttling backlog is full.
	ThrottleBacklogLimitExceeded Code = 429002
	// ThrottlingBacklogTimeout is 429003: the request waited too long in the throttling backlog.
	ThrottlingBacklogTimeout Code = 429003
	// ThrottlingMaxActiveJobCountExceeded is 429004: too many jobs are active.
	ThrottlingMaxActiveJobCountExceeded Code = 429004
	// DeviceThrottlingLimitExceeded is 429005: a single device went over its own rate limit.
	DeviceThrottlingLimitExceeded Code = 429005

	// 499 Client Closed Request (nginx convention, not in the HTTP registry).

	// ClientClosedRequest is 499000: the client closed the request before the hub answered.
	ClientClosedRequest Code = 499000

	// 500 Internal Server Error.

	// ServerError is 500001: an internal error occurred; usually transient.
	ServerError Code = 500001
	// JobCancelled is 500002: the job was cancelled.
	JobCancelled Code = 500002
	// GenericTimeout is 500008: the hub could not complete the request in time.
	GenericTimeout Code = 500008
	// InvalidThrottleParameter is 500009: a throttle parameter is invalid.
	InvalidThrottleParameter Code = 500009
	// ModelRepoEndpointError is 500301: the model repository endpoint failed.
	ModelRepoEndpointError Code = 500301
	// ResolutionError is 500302: a model could not be resolved.
	ResolutionError Code = 500302
	// UnableToFetchCredentials is 500401: credentials could not be fetched.
	UnableToFetchCredentials Code = 500401
	// UnableToFetchTenantInfo is 500402: tenant information could not be fetched.
	UnableToFetchTenantInfo Code = 500402
	// UnableToShareIdentity is 500403: the identity could not be shared.
	UnableToShareIdentity Code = 500403
	// UnableToExpandDiscoveryInfo is 500501: discovery information could not be expanded.
	UnableToExpandDiscoveryInfo Code = 500501
	// UnableToExpandComponentInfo is 500502: component information could not be expanded.
	UnableToExpandComponentInfo Code = 500502
	// UnableToCompressComponentInfo is 500503: component information could not be compressed.
	UnableToCompressComponentInfo Code = 500503
	// UnableToCompressDiscoveryInfo is 500504: discovery information could not be compressed.
	UnableToCompressDiscoveryInfo Code = 500504
	// OrphanDiscoveryDocument is 500505: a discovery document has no owner.
	OrphanDiscoveryDocument Code = 500505

	// 502 Bad Gateway.

	// GenericBadGateway is 502000: an upstream component returned an invalid response.
	GenericBadGateway Code = 502000

	// 503 Service Unavailable.

	// GenericServiceUnavailable is 503000: the service is unavailable.
	GenericServiceUnavailable Code = 503000
	// ServiceUnavailable is 503001: the hub is temporarily unavailable; retry.
	ServiceUnavailable Code = 503001
	// PartitionNotFound is 503003: an internal partition is temporarily unavailable; retry.
	PartitionNotFound Code = 503003
	// IotHubActivationFailed is 503004: the hub could not be activated.
	IotHubActivationFailed Code = 503004
	// ServerBusy is 503005: the server is busy; retry later.
	ServerBusy Code = 503005
	// IotHubRestoring is 503006: the hub is being restored.
	IotHubRestoring Code = 503006
	// ReceiveLinkOpensThrottled is 503008: receive links are being opened too fast; retry later.
	ReceiveLinkOpensThrottled Code = 503008
	// ConnectionUnavailable is 503101: the connection is unavailable.
	ConnectionUnavailable Code = 503101
	// DeviceUnavailable is 503102: the device is unavailable.
	DeviceUnavailable Code = 503102
	// ConfigurationNotAvailable is 503201: the configuration is unavailable.
	ConfigurationNotAvailable Code = 503201
	// GroupNotAvailable is 503202: the group is unavailable.
	GroupNotAvailable Code = 503202
	// HostingServiceNotAvailable is 503301: the hosting service is unavailable.
	HostingServiceNotAvailable Code = 503301

	// 504 Gateway Timeout.

	// GenericGatewayTimeout is 504000: a gateway timed out.
	GenericGatewayTimeout Code = 504000
	// GatewayTimeout is 504101: the device did not answer the direct method in time.
	GatewayTimeout Code = 504101
)

// catalog is every IoT Hub error code Roost knows, in code order. Summary is one line in our own
// words; Symptom, Cause and Resolution are filled for the codes in the troubleshooting guide and the
// ones users commonly meet (see [Entry.Explained]). Tests hold the invariants: unique codes and
// names, status prefix, a constant per entry.
var catalog = []Entry{
	{Code: GenericBadRequest, Name: "GenericBadRequest", Summary: "The request is malformed and no more specific code applies."},
	{
		Code: InvalidProtocolVersion, Name: "InvalidProtocolVersion",
		Summary: "The api-version is missing or not supported.",
		Symptom: "Every request from one client fails with 400001 while other clients of the same hub " +
			"work.",
		Cause: "The request's api-version query parameter is missing, or names a version Roost does " +
			"not implement; typical of hand-built HTTP calls and of very old or preview SDK builds.",
		Resolution: "Use a released Azure IoT SDK, or copy the api-version that a current SDK sends for the " +
			"same call into your own requests.",
	},
	{Code: DeviceInvalidResultCount, Name: "DeviceInvalidResultCount", Summary: "Invalid result count; defined by the SDKs, never sent by the service."},
	{Code: InvalidOperation, Name: "InvalidOperation", Summary: "The operation is not valid here, e.g. an AMQP target without a device id."},
	{
		Code: ArgumentInvalid, Name: "ArgumentInvalid",
		Summary: "A request argument or body field has an invalid value.",
		Symptom: "A request is refused with 400004 and a message that names the offending field, often " +
			"when patching a twin, invoking a method or creating an identity.",
		Cause: "A value breaks one of the hub's rules. Common examples: a twin key containing '.', '$' " +
			"or a space, twin JSON nested deeper than allowed, a method timeout outside 5 to 300 " +
			"seconds, or an id with characters the hub does not accept.",
		Resolution: "Read the message to find the field, fix its value and send again. Roost applies the " +
			"same twin, method and identity limits as IoT Hub, so code that works against IoT Hub " +
			"works here too.",
	},
	{Code: ArgumentNull, Name: "ArgumentNull", Summary: "A required argument is missing or null."},
	{
		Code: IotHubFormatError, Name: "IotHubFormatError",
		Summary: "The request body cannot be parsed or has the wrong shape.",
		Symptom: "A request that carries a body fails with 400006 before Roost acts on any of it.",
		Cause: "The body is not valid JSON, or it is JSON of the wrong shape: a truncated upload, an " +
			"array where an object belongs, a string instead of an object, or a body sent with the " +
			"wrong Content-Type.",
		Resolution: "Check the payload with a JSON validator (for example `jq . body.json`), send it as " +
			"application/json, and compare it with what an SDK sends for the same operation.",
	},
	{Code: DeviceStorageEntitySerializationError, Name: "DeviceStorageEntitySerializationError", Summary: "A stored identity could not be serialized or deserialized."},
	{Code: BlobContainerValidationError, Name: "BlobContainerValidationError", Summary: "The blob container is invalid or cannot be reached."},
	{Code: ImportWarningExistsError, Name: "ImportWarningExistsError", Summary: "The import job finished with warnings."},
	{Code: InvalidSchemaVersion, Name: "InvalidSchemaVersion", Summary: "The schema version is not supported."},
	{Code: DeviceDefinedMultipleTimes, Name: "DeviceDefinedMultipleTimes", Summary: "An id appears more than once in a bulk request."},
	{Code: DeserializationError, Name: "DeserializationError", Summary: "The request could not be deserialized."},
	{Code: BulkRegistryOperationFailure, Name: "BulkRegistryOperationFailure", Summary: "At least one device in a bulk registry request failed."},
	{Code: DefaultStorageEndpointNotConfigured, Name: "DefaultStorageEndpointNotConfigured", Summary: "A file upload was requested but no storage is configured."},
	{Code: InvalidFileUploadCorrelationId, Name: "InvalidFileUploadCorrelationId", Summary: "The file-upload correlation id is unknown."},
	{Code: ExpiredFileUploadCorrelationId, Name: "ExpiredFileUploadCorrelationId", Summary: "The file-upload correlation id has expired."},
	{Code: InvalidStorageEndpoint, Name: "InvalidStorageEndpoint", Summary: "The storage endpoint is invalid."},
	{Code: InvalidMessagingEndpoint, Name: "InvalidMessagingEndpoint", Summary: "The messaging endpoint is invalid."},
	{Code: InvalidFileUploadCompletionStatus, Name: "InvalidFileUploadCompletionStatus", Summary: "The file-upload completion status is invalid."},
	{Code: InvalidStorageEndpointOrBlob, Name: "InvalidStorageEndpointOrBlob", Summary: "Storage refused to create the blob (one SDK enum calls this code IotHubSuspended)."},
	{Code: RequestCanceled, Name: "RequestCanceled", Summary: "The request was cancelled."},
	{Code: InvalidStorageEndpointProperty, Name: "InvalidStorageEndpointProperty", Summary: "A storage endpoint property is invalid."},
	{Code: EtagDoesNotMatch, Name: "EtagDoesNotMatch", Summary: "The etag does not match (the 400 variant of 412001)."},
	{Code: RequestTimedOut, Name: "RequestTimedOut", Summary: "The request timed out."},
	{Code: UnsupportedOperationOnReplica, Name: "UnsupportedOperationOnReplica", Summary: "The operation is not supported on a replica."},
	{Code: NullMessage, Name: "NullMessage", Summary: "The message is null."},
	{
		Code: ConnectionForcefullyClosedOnNewConnection, Name: "ConnectionForcefullyClosedOnNewConnection",
		Summary: "The same identity connected again, so the older connection was closed.",
		Symptom: "A device loses its connection without warning (the .NET SDK over MQTT reports " +
			"Communication_Error), and work in progress on that connection, such as twin updates or " +
			"direct method replies, fails with 400027.",
		Cause: "Another client opened a connection using this same device or module identity. Roost " +
			"keeps exactly one connection per identity across all nodes: the newest one wins and " +
			"the older one is closed with this code.",
		Resolution: "Give every running client its own identity. Look for a second copy of the app, a stale " +
			"container or a test script using the same connection string; `roost logs query` shows " +
			"the matching 409002 records with the masked IP address of each client.",
	},
	{Code: InvalidDeviceScope, Name: "InvalidDeviceScope", Summary: "The device scope is invalid."},
	{Code: ConnectionForcefullyClosedOnFaultInjection, Name: "ConnectionForcefullyClosedOnFaultInjection", Summary: "The connection was closed for maintenance or fault injection; reconnecting works."},
	{Code: ConnectionRejectedOnFaultInjection, Name: "ConnectionRejectedOnFaultInjection", Summary: "The connection was refused during maintenance; retrying works."},
	{Code: InvalidEndpointAuthenticationType, Name: "InvalidEndpointAuthenticationType", Summary: "The endpoint's authentication type is invalid."},
	{Code: ManagedIdentityNotEnabled, Name: "ManagedIdentityNotEnabled", Summary: "A managed identity is required but not enabled."},
	{Code: InvalidPolicyKey, Name: "InvalidPolicyKey", Summary: "The shared access policy key is invalid."},
	{Code: BulkRegenerateDeviceKeyOperationFailure, Name: "BulkRegenerateDeviceKeyOperationFailure", Summary: "Regenerating the keys of a set of devices failed."},
	{Code: InvalidRouteTestInput, Name: "InvalidRouteTestInput", Summary: "The route test input is invalid."},
	{Code: InvalidSourceOnRoute, Name: "InvalidSourceOnRoute", Summary: "The route's source is invalid."},
	{Code: RoutingNotEnabled, Name: "RoutingNotEnabled", Summary: "Message routing is not enabled."},
	{Code: InvalidContentEncodingOrType, Name: "InvalidContentEncodingOrType", Summary: "The message's content encoding or content type does not suit routing."},
	{Code: CannotRegisterModuleToModule, Name: "CannotRegisterModuleToModule", Summary: "A module cannot be registered under another module."},
	{Code: TenantHubRoutingNotEnabled, Name: "TenantHubRoutingNotEnabled", Summary: "Routing is not enabled for the tenant hub."},
	{Code: InvalidConfigurationTargetCondition, Name: "InvalidConfigurationTargetCondition", Summary: "The configuration's targetCondition is invalid."},
	{Code: InvalidConfigurationContent, Name: "InvalidConfigurationContent", Summary: "The configuration content is invalid."},
	{Code: CannotModifyImmutableConfigurationContent, Name: "CannotModifyImmutableConfigurationContent", Summary: "A configuration's content cannot change after it is created."},
	{Code: InvalidConfigurationCustomMetricsQuery, Name: "InvalidConfigurationCustomMetricsQuery", Summary: "A configuration's custom metric query is invalid."},
	{Code: InvalidPnPInterfaceDefinition, Name: "InvalidPnPInterfaceDefinition", Summary: "The Plug and Play interface definition is invalid."},
	{Code: InvalidPnPDesiredProperties, Name: "InvalidPnPDesiredProperties", Summary: "The Plug and Play desired properties are invalid."},
	{Code: InvalidPnPReportedProperties, Name: "InvalidPnPReportedProperties", Summary: "The Plug and Play reported properties are invalid."},
	{Code: InvalidPnPWritableReportedProperties, Name: "InvalidPnPWritableReportedProperties", Summary: "The Plug and Play writable reported properties are invalid."},
	{Code: InvalidDigitalTwinJsonPatch, Name: "InvalidDigitalTwinJsonPatch", Summary: "The digital twin JSON patch is invalid."},
	{Code: InvalidDigitalTwinPayload, Name: "InvalidDigitalTwinPayload", Summary: "The digital twin payload is invalid."},
	{Code: InvalidDigitalTwinPatch, Name: "InvalidDigitalTwinPatch", Summary: "The digital twin patch is invalid."},
	{Code: InvalidDigitalTwinPatchPath, Name: "InvalidDigitalTwinPatchPath", Summary: "A path in the digital twin patch is invalid."},
	{Code: GenericUnauthorized, Name: "GenericUnauthorized", Summary: "The request is not authorized."},
	{Code: IotHubNotFound, Name: "IotHubNotFound", Summary: "The hub named in the request does not exist."},
	{
		Code: IotHubUnauthorizedAccess, Name: "IotHubUnauthorizedAccess", GuideName: "AuthenticationFailed",
		Summary: "Authentication failed: the token had expired, or the device is unknown or disabled.",
		Symptom: "A device's connection attempt is refused (MQTT CONNACK return code 5, HTTP 401) and " +
			"the SDK reports an authentication error; the Connections log has a 401002 record.",
		Cause: "Roost uses this code when the SAS token had already expired when it was presented, " +
			"when no device with the token's id is registered, or when the device is registered but " +
			"disabled (the description then says so).",
		Resolution: "Run `roost device show <id>` to check that the device exists and is enabled, then " +
			"connect with a fresh token; the SDKs make one from a connection string. Check the " +
			"device clock too: a clock running behind makes newly signed tokens look expired.",
	},
	{
		Code: IotHubUnauthorized, Name: "IotHubUnauthorized", GuideName: "IoTHubUnauthorized",
		Summary: "The credential was rejected, or a live connection's token expired.",
		Symptom: "A connection or request is rejected as unauthorized, or a working device is " +
			"disconnected with 401003 in the Connections log, often followed by 404104 and a " +
			"reconnect within a minute.",
		Cause: "The credential did not verify: the signature was made with a wrong or rotated key, the " +
			"token names another resource or hub host name, or the shared access policy lacks the " +
			"permission the operation needs. Roost also records 401003 when it closes a live " +
			"connection because that connection's token has expired.",
		Resolution: "A 401003 at token expiry followed by a quick reconnect is normal SDK behaviour and " +
			"needs no action. Otherwise compare the key and host name the client uses with `roost " +
			"device show <id>` (or `roost connection-string` for service clients), and use a policy " +
			"that grants the needed permission.",
	},
	{Code: ElasticPoolNotFound, Name: "ElasticPoolNotFound", Summary: "The elastic pool was not found (Azure-internal)."},
	{Code: SystemModuleModifyUnauthorizedAccess, Name: "SystemModuleModifyUnauthorizedAccess", Summary: "An IoT Edge system module may not be modified this way."},
	{Code: GenericForbidden, Name: "GenericForbidden", Summary: "The request is forbidden."},
	{Code: IotHubSuspended, Name: "IotHubSuspended", Summary: "The hub is suspended (one SDK enum calls this code JobQuotaExceeded)."},
	{
		Code: IotHubQuotaExceeded, Name: "IotHubQuotaExceeded",
		Summary: "The daily message quota is used up; it resets at 00:00 UTC.",
		Symptom: "From some point in the day onward, device messages and many service calls fail with " +
			"403002 until the next UTC day begins.",
		Cause: "The hub's daily message quota is used up. Roost counts messages against the configured " +
			"daily quota the way IoT Hub does, and the count starts again at 00:00 UTC.",
		Resolution: "Wait for the reset, raise or lift the daily quota in the hub's configuration, or send " +
			"fewer messages (batch readings, send less often). Watch daily quota usage so the limit " +
			"does not come as a surprise.",
	},
	{Code: JobQuotaExceeded, Name: "JobQuotaExceeded", Summary: "Too many jobs are running, or an import/export job is already active."},
	{
		Code: DeviceMaximumQueueDepthExceeded, Name: "DeviceMaximumQueueDepthExceeded",
		Summary: "The device already has the maximum of 50 cloud-to-device messages queued.",
		Symptom: "Sending a cloud-to-device message to one device fails with 403004.",
		Cause: "The device already has 50 cloud-to-device messages waiting, the most a device queue " +
			"holds. Usually the device is offline, polls rarely over HTTPS, or receives messages " +
			"without ever completing them.",
		Resolution: "Make the device complete, reject or abandon each message soon after it arrives, prefer " +
			"MQTT or AMQP over slow HTTPS polling, and send fewer messages or give them a shorter " +
			"time to live. To empty the backlog now, purge the device's queue (DELETE " +
			"/devices/{id}/commands).",
	},
	{Code: IotHubMaxCbsTokenExceeded, Name: "IotHubMaxCbsTokenExceeded", Summary: "Too many CBS tokens were put on the AMQP connection."},
	{
		Code: DeviceMaximumActiveFileUploadLimitExceeded, Name: "DeviceMaximumActiveFileUploadLimitExceeded",
		Summary: "The device already has 10 file uploads in progress.",
		Symptom: "A device asks for a file upload URI and is refused with 403006.",
		Cause: "The device already has 10 uploads in progress, the per-device maximum. An upload " +
			"counts as in progress until the device reports that it finished, so devices that " +
			"upload but never send the completion notice (for example because the network dropped " +
			"just after the upload) run out of slots.",
		Resolution: "Always send the upload completion notification, with isSuccess false when the upload " +
			"failed. A stuck slot is freed only when its upload SAS expires, so a shorter file " +
			"upload SAS lifetime makes the device recover sooner.",
	},
	{Code: DeviceMaximumQueueSizeExceeded, Name: "DeviceMaximumQueueSizeExceeded", Summary: "The device's queue is over its size limit."},
	{Code: RoutingEndpointResponseForbidden, Name: "RoutingEndpointResponseForbidden", Summary: "A routing endpoint refused the message as forbidden."},
	{
		Code: InvalidMessageExpiryTime, Name: "InvalidMessageExpiryTime",
		Summary: "The message expiry time is invalid.",
		Symptom: "Sending a cloud-to-device message fails with 403009 and the message is not queued.",
		Cause: "The message's absolute expiry time (iothub-expiry) is not in the future, or it is more " +
			"than two days away, the longest a cloud-to-device message may wait.",
		Resolution: "Set the expiry from the current UTC time, between a few seconds and two days ahead, " +
			"or leave it out to use the hub's default time to live (c2d-default-ttl). Check the sender's " +
			"clock if expiries that look right are refused.",
	},
	{Code: OperationNotAvailableInCurrentTier, Name: "OperationNotAvailableInCurrentTier", Summary: "The feature is not available in the hub's tier."},
	{Code: KeyEncryptionKeyRevoked, Name: "KeyEncryptionKeyRevoked", Summary: "The customer-managed encryption key was revoked."},
	{
		Code: DeviceDisabled, Name: "DeviceDisabled",
		Summary: "The device is disabled.",
		Symptom: "An operation for one device is refused with 403012.",
		Cause: "The device's status in the registry is disabled, so Roost refuses traffic for it. A " +
			"disabled device that tries to connect is refused with 401002 instead, and the " +
			"description explains that the device is disabled.",
		Resolution: "Run `roost device show <id>` to see the status and statusReason. Once the reason is " +
			"dealt with, update the device with status \"enabled\".",
	},
	{
		Code: DeviceModelMaxPropertiesExceeded, Name: "DeviceModelMaxPropertiesExceeded",
		Summary: "A twin section would be over its size limit.",
		Symptom: "Updating a twin fails with 403100 and a message such as \"'properties.reported' would be " +
			"33000 bytes\": a device's reported-property patch (MQTT status 403) or a service's tags or " +
			"desired-property update (HTTP 403).",
		Cause: "After the change, tags would exceed 8 KB, or desired or reported properties 32 KB each. " +
			"The size counts every key and string value by its characters, numbers as 8 bytes and " +
			"booleans as 4; $metadata and $version do not count. Nothing is changed.",
		Resolution: "Keep twins small: delete properties that are no longer needed (set them to null), " +
			"shorten keys, and move bulky data to telemetry or file upload, keeping only a reference " +
			"in the twin.",
	},
	{Code: DeviceModelMaxIndexablePropertiesExceeded, Name: "DeviceModelMaxIndexablePropertiesExceeded", Summary: "The device model has too many indexable properties."},
	{Code: DeviceMaximumInflightMethodExceeded, Name: "DeviceMaximumInflightMethodExceeded", Summary: "Too many direct method calls are in flight for the device."},
	{Code: GenericNotFound, Name: "GenericNotFound", Summary: "The resource was not found."},
	{
		Code: DeviceNotFound, Name: "DeviceNotFound",
		Summary: "No device with that id is registered.",
		Symptom: "A service operation aimed at a device fails with 404001: sending it a cloud-to-device " +
			"message, reading or updating its twin, invoking a method, or fetching its identity.",
		Cause: "No device with that id is registered. The id may be misspelt or differ in case (ids " +
			"are case-sensitive), or the device was deleted.",
		Resolution: "Check the exact id with `roost device show <id>` and register the device if it is " +
			"missing. For a registered device that is merely offline, direct methods fail with " +
			"404103 instead.",
	},
	{Code: JobNotFound, Name: "JobNotFound", Summary: "No job with that id exists."},
	{Code: QuotaMetricNotFound, Name: "QuotaMetricNotFound", Summary: "The quota metric was not found."},
	{Code: SystemPropertyNotFound, Name: "SystemPropertyNotFound", Summary: "The system property was not found."},
	{Code: AmqpAddressNotFound, Name: "AmqpAddressNotFound", Summary: "The AMQP link address is not known."},
	{Code: RoutingEndpointResponseNotFound, Name: "RoutingEndpointResponseNotFound", Summary: "A routing endpoint answered not found."},
	{Code: CertificateNotFound, Name: "CertificateNotFound", Summary: "The certificate was not found."},
	{Code: ElasticPoolTenantHubNotFound, Name: "ElasticPoolTenantHubNotFound", Summary: "The elastic pool's tenant hub was not found (Azure-internal)."},
	{
		Code: ModuleNotFound, Name: "ModuleNotFound",
		Summary: "The device has no module with that id.",
		Symptom: "An operation on a module identity or module twin fails with 404010.",
		Cause: "The device exists, but it has no module with that id (module ids are case-sensitive), " +
			"or the module was deleted. A missing device gives 404001 instead.",
		Resolution: "List the device's modules (GET /devices/{id}/modules), create the module if it should " +
			"exist, and check the module id in the module's connection string.",
	},
	{Code: AzureTableStoreNotFound, Name: "AzureTableStoreNotFound", Summary: "An internal table store was not found (Azure-internal)."},
	{Code: IotHubFailingOver, Name: "IotHubFailingOver", Summary: "The hub is failing over to another region."},
	{Code: FeatureNotSupported, Name: "FeatureNotSupported", Summary: "The feature is not supported."},
	{Code: DigitalTwinInterfaceNotFound, Name: "DigitalTwinInterfaceNotFound", Summary: "The digital twin interface was not found."},
	{Code: QueryStoreClusterNotFound, Name: "QueryStoreClusterNotFound", Summary: "The query store cluster was not found (Azure-internal)."},
	{
		Code: DeviceNotOnline, Name: "DeviceNotOnline",
		Summary: "The device is not connected or has no direct method handler.",
		Symptom: "A direct method call fails with 404103, sometimes even though the caller believes the " +
			"device is running.",
		Cause: "Roost had no connection to deliver the call to: the device is not connected, it " +
			"disconnected or crashed before the call reached it, or it is connected but never " +
			"subscribed to direct methods (no method handler registered in the SDK, or no " +
			"subscription to $iothub/methods/POST/# over raw MQTT).",
		Resolution: "Check the device's connection state with `roost device show <id>`. If it is connected, " +
			"make the device app register its method handler right after connecting. To let a " +
			"device that is reconnecting pick up the call, set connectTimeoutInSeconds on the " +
			"request.",
	},
	{
		Code: DeviceConnectionClosedRemotely, Name: "DeviceConnectionClosedRemotely",
		Summary: "The device's connection ended without a clean disconnect.",
		Symptom: "Devices drop off now and then and the Connections log shows deviceDisconnect with " +
			"404104, usually followed by a new connection within a minute. Drops at a steady " +
			"interval point to token renewal.",
		Cause: "The connection ended without a clean disconnect from the device: the network was gone " +
			"for longer than the keep-alive window, the device app crashed or restarted, a NAT or " +
			"firewall dropped an idle TCP session, or the SDK closed the socket to renew an " +
			"expiring token.",
		Resolution: "When a 401003 for the same device comes just before it, this is token renewal and " +
			"needs no action. Otherwise check the device's network, keep its SDK current, and keep " +
			"the MQTT keep-alive well under any idle timeout on the path. Use `roost logs query` to " +
			"see whether many devices dropped at the same moment, which points at the network or " +
			"the Roost node rather than the devices.",
	},
	{Code: ConfigurationNotFound, Name: "ConfigurationNotFound", Summary: "No configuration with that id exists."},
	{Code: GroupNotFound, Name: "GroupNotFound", Summary: "The group was not found."},
	{Code: DigitalTwinModelNotFound, Name: "DigitalTwinModelNotFound", Summary: "The digital twin model was not found."},
	{Code: InterfaceNameModelNotFound, Name: "InterfaceNameModelNotFound", Summary: "No model is known for the interface name."},
	{Code: GenericMethodNotAllowed, Name: "GenericMethodNotAllowed", Summary: "The HTTP method is not allowed on this resource."},
	{Code: OperationNotAllowedInCurrentState, Name: "OperationNotAllowedInCurrentState", Summary: "The operation is not allowed in the resource's current state."},
	{Code: ImportDevicesNotSupported, Name: "ImportDevicesNotSupported", Summary: "Importing devices is not supported."},
	{Code: BulkAddDevicesNotSupported, Name: "BulkAddDevicesNotSupported", Summary: "Adding devices in bulk is not supported."},
	{Code: RequestTimeout, Name: "RequestTimeout", Summary: "The request timed out in the client; the service never sends this code."},
	{Code: GenericConflict, Name: "GenericConflict", Summary: "The request conflicts with the resource's current state."},
	{
		Code: DeviceAlreadyExists, Name: "DeviceAlreadyExists",
		Summary: "A device with that id already exists.",
		Symptom: "Creating a device fails with 409001.",
		Cause: "A device with that id is already registered; a create request (a PUT without If-Match) " +
			"never overwrites an existing identity.",
		Resolution: "Choose another id, or update the existing device instead by sending If-Match with its " +
			"etag (or \"*\" to overwrite). `roost device show <id>` shows the device that holds the " +
			"id.",
	},
	{
		Code: LinkCreationConflict, Name: "LinkCreationConflict",
		Summary: "A new connection for the same identity replaced the existing one.",
		Symptom: "The Connections log shows 409002 for a device, usually next to other disconnects or " +
			"failed cloud-to-device deliveries.",
		Cause: "A new connection arrived for an identity that already had one. Roost keeps the new " +
			"connection, closes the old one and records this code for it. Most often the device saw " +
			"its network break before Roost did and reconnected; sometimes two clients share an " +
			"identity or the app opens a new connection without closing the old one.",
		Resolution: "Treat it as a consequence rather than the problem: look in `roost logs query` for the " +
			"error just before it for the same device. If it repeats with no other error, make the " +
			"device reconnect only after its current connection has closed, and make sure no two " +
			"clients use one identity.",
	},
	{Code: CallbackSubscriptionConflict, Name: "CallbackSubscriptionConflict", Summary: "The callback subscription conflicts with an existing one."},
	{Code: ModelAlreadyExists, Name: "ModelAlreadyExists", Summary: "The model already exists."},
	{Code: DeviceLocked, Name: "DeviceLocked", Summary: "The device is locked by another operation."},
	{Code: DeviceJobAlreadyExists, Name: "DeviceJobAlreadyExists", Summary: "The device already has this job."},
	{Code: JobAlreadyExists, Name: "JobAlreadyExists", Summary: "A job with that id already exists."},
	{
		Code: ModuleAlreadyExistsOnDevice, Name: "ModuleAlreadyExistsOnDevice",
		Summary: "The device already has a module with that id.",
		Symptom: "Creating a module fails with 409301.",
		Cause:   "The device already has a module with that id.",
		Resolution: "Choose another module id, or update the existing module with its etag (or If-Match \"*\" " +
			"to overwrite).",
	},
	{Code: ConfigurationAlreadyExists, Name: "ConfigurationAlreadyExists", Summary: "A configuration with that id already exists."},
	{Code: ApplyConfigurationAlreadyInProgressOnDevice, Name: "ApplyConfigurationAlreadyInProgressOnDevice", Summary: "A configuration is already being applied to the device."},
	{Code: DigitalTwinModelAlreadyExists, Name: "DigitalTwinModelAlreadyExists", Summary: "The digital twin model already exists."},
	{Code: DigitalTwinModelExistsWithOtherModelType, Name: "DigitalTwinModelExistsWithOtherModelType", Summary: "The digital twin model exists with another model type."},
	{Code: InterfaceNameModelAlreadyExists, Name: "InterfaceNameModelAlreadyExists", Summary: "A model for that interface name already exists."},
	{Code: GenericPreconditionFailed, Name: "GenericPreconditionFailed", Summary: "A precondition of the request failed."},
	{
		Code: PreconditionFailed, Name: "PreconditionFailed",
		Summary: "The If-Match etag is not the entity's current etag.",
		Symptom: "Updating or deleting a device, module, twin or configuration fails with 412001 (the " +
			"Node SDK raises InvalidEtagError, the C# SDK PreconditionFailedException).",
		Cause: "The etag in If-Match is not the entity's current etag: something changed the entity " +
			"after the client read it, or the client sent a stale or invented etag.",
		Resolution: "Read the entity again, apply the change to the fresh copy and retry with the new etag. " +
			"Send If-Match \"*\" only when overwriting whatever is stored is really what you want.",
	},
	{
		Code: DeviceMessageLockLost, Name: "DeviceMessageLockLost",
		Summary: "The device settled a cloud-to-device message after its lock had expired.",
		Symptom: "A device tries to complete, reject or abandon a cloud-to-device message and gets " +
			"412002; the message may then be delivered again.",
		Cause: "The device held the message longer than the one-minute lock, so Roost had already put " +
			"it back in the queue and the lock token the device used is no longer valid. The lock " +
			"duration is fixed.",
		Resolution: "Settle every message within a minute of receiving it: acknowledge first and do slow " +
			"work afterwards. Keep track of message ids you have handled so a redelivered message " +
			"is not acted on twice.",
	},
	{Code: JobRunPreconditionFailed, Name: "JobRunPreconditionFailed", Summary: "A precondition for running the job failed."},
	{Code: InflightMessagesInLink, Name: "InflightMessagesInLink", Summary: "The link still has messages in flight."},
	{Code: GenericRequestEntityTooLarge, Name: "GenericRequestEntityTooLarge", Summary: "The request body is too large."},
	{
		Code: MessageTooLarge, Name: "MessageTooLarge",
		Summary: "The message is over the size limit.",
		Symptom: "Sending a message fails with 413001.",
		Cause: "The message is bigger than allowed: 256 KB for a device-to-cloud message, application " +
			"properties included, or 64 KB for a cloud-to-device message.",
		Resolution: "Send less per message: split or compress the payload and drop properties you do not " +
			"need. For large data, use file upload and send only a reference to the file.",
	},
	{
		Code: TooManyDevices, Name: "TooManyDevices",
		Summary: "A bulk registry request lists more than 100 devices.",
		Symptom: "A bulk registry request (POST /devices) fails with 413002.",
		Cause:   "The request lists more than 100 devices, the most one bulk call may carry.",
		Resolution: "Split the list into batches of at most 100 and pace them, since every device in a " +
			"batch counts against the identity registry throttle.",
	},
	{Code: TooManyModulesOnDevice, Name: "TooManyModulesOnDevice", Summary: "The device has reached its module limit."},
	{Code: ConfigurationCountLimitExceeded, Name: "ConfigurationCountLimitExceeded", Summary: "The hub has reached its configuration limit."},
	{Code: DigitalTwinModelCountLimitExceeded, Name: "DigitalTwinModelCountLimitExceeded", Summary: "The digital twin model limit is reached."},
	{Code: InterfaceNameCompressionModelCountLimitExceeded, Name: "InterfaceNameCompressionModelCountLimitExceeded", Summary: "The interface-name compression model limit is reached."},
	{Code: GenericUnsupportedMediaType, Name: "GenericUnsupportedMediaType", Summary: "The Content-Type is not supported."},
	{Code: IncompatibleDataType, Name: "IncompatibleDataType", Summary: "The data type is incompatible."},
	{Code: GenericTooManyRequests, Name: "GenericTooManyRequests", Summary: "Too many requests."},
	{
		Code: ThrottlingException, Name: "ThrottlingException",
		Summary: "An operation stayed over its rate limit until the throttling backlog overflowed.",
		Symptom: "Requests fail with 429001 under load, usually after a period in which they became " +
			"slower; the SDKs retry with growing delays.",
		Cause: "An operation type stayed above its rate limit for long enough that the backlog Roost " +
			"uses to absorb bursts overflowed. Limits apply per operation type to the hub as a " +
			"whole, not to each device.",
		Resolution: "Find out which operation is throttled by grouping the 429001 records in `roost logs " +
			"query` by category, and compare its rate with the configured limit. Then lower the " +
			"rate (batch telemetry, spread reconnects with jitter) or raise the limit if the " +
			"machine has capacity to spare.",
	},
	{
		Code: ThrottleBacklogLimitExceeded, Name: "ThrottleBacklogLimitExceeded",
		Summary: "The throttling backlog is full.",
		Symptom: "During a burst of traffic, requests are refused at once with 429002.",
		Cause: "The backlog that holds over-limit requests until they can be served is full, so " +
			"further over-limit requests are refused immediately instead of waiting.",
		Resolution: "Smooth the burst: add jitter to reconnects and scheduled sends, batch where you can, " +
			"or raise the throttle. Clients should retry with back-off, as the SDKs do.",
	},
	{
		Code: ThrottlingBacklogTimeout, Name: "ThrottlingBacklogTimeout",
		Summary: "The request waited too long in the throttling backlog.",
		Symptom: "Requests fail with 429003 after taking unusually long.",
		Cause: "The request waited in the throttling backlog longer than allowed without being served, " +
			"because its operation type stayed above its rate limit.",
		Resolution: "Lower the sustained rate of that operation or raise its limit. A short burst is " +
			"absorbed; a steady overload is not.",
	},
	{Code: ThrottlingMaxActiveJobCountExceeded, Name: "ThrottlingMaxActiveJobCountExceeded", Summary: "Too many jobs are active."},
	{
		Code: DeviceThrottlingLimitExceeded, Name: "DeviceThrottlingLimitExceeded",
		Summary: "A single device went over its own rate limit.",
		Symptom: "Requests from one device fail with 429005 while other devices carry on normally.",
		Cause: "That device alone went over the per-device rate limit, typically because a loop sends " +
			"telemetry or reported properties as fast as it can, or because it reconnects in a " +
			"tight loop.",
		Resolution: "Find the device in `roost logs query` and slow it down: batch readings, debounce " +
			"reported property updates, and back off between reconnect attempts.",
	},
	{Code: ClientClosedRequest, Name: "ClientClosedRequest", Summary: "The client closed the request before the hub answered."},
	{
		Code: ServerError, Name: "ServerError",
		Summary: "An internal error occurred; usually transient.",
		Symptom: "A connection attempt or request fails with 500001; retrying usually works.",
		Cause: "Something failed inside Roost rather than in the request: the storage engine (NATS " +
			"JetStream) was briefly unreachable, a node was restarting, or Roost hit a bug. The " +
			"client sees only a generic message, while the underlying cause is logged.",
		Resolution: "Retry with back-off, as the SDKs do. If it keeps happening, take the tracking id from " +
			"the error response, find the matching record with `roost logs query` (the tracking id " +
			"is its correlationId), and read the node's own log for the cause; report persistent " +
			"failures as a bug.",
	},
	{Code: JobCancelled, Name: "JobCancelled", Summary: "The job was cancelled."},
	{
		Code: GenericTimeout, Name: "GenericTimeout",
		Summary: "The hub could not complete the request in time.",
		Symptom: "Connecting, or another operation, fails with 500008 after a delay.",
		Cause: "Roost could not finish the request in time, usually because its storage engine was " +
			"slow or unavailable: a saturated disk, or an external NATS cluster that lost quorum or " +
			"is electing a leader.",
		Resolution: "Retry with back-off. If it persists, check the node's health on the admin address " +
			"(/healthz) and, with an external NATS cluster, that a majority of its servers are up " +
			"and reachable.",
	},
	{Code: InvalidThrottleParameter, Name: "InvalidThrottleParameter", Summary: "A throttle parameter is invalid."},
	{Code: ModelRepoEndpointError, Name: "ModelRepoEndpointError", Summary: "The model repository endpoint failed."},
	{Code: ResolutionError, Name: "ResolutionError", Summary: "A model could not be resolved."},
	{Code: UnableToFetchCredentials, Name: "UnableToFetchCredentials", Summary: "Credentials could not be fetched."},
	{Code: UnableToFetchTenantInfo, Name: "UnableToFetchTenantInfo", Summary: "Tenant information could not be fetched."},
	{Code: UnableToShareIdentity, Name: "UnableToShareIdentity", Summary: "The identity could not be shared."},
	{Code: UnableToExpandDiscoveryInfo, Name: "UnableToExpandDiscoveryInfo", Summary: "Discovery information could not be expanded."},
	{Code: UnableToExpandComponentInfo, Name: "UnableToExpandComponentInfo", Summary: "Component information could not be expanded."},
	{Code: UnableToCompressComponentInfo, Name: "UnableToCompressComponentInfo", Summary: "Component information could not be compressed."},
	{Code: UnableToCompressDiscoveryInfo, Name: "UnableToCompressDiscoveryInfo", Summary: "Discovery information could not be compressed."},
	{Code: OrphanDiscoveryDocument, Name: "OrphanDiscoveryDocument", Summary: "A discovery document has no owner."},
	{Code: GenericBadGateway, Name: "GenericBadGateway", Summary: "An upstream component returned an invalid response."},
	{Code: GenericServiceUnavailable, Name: "GenericServiceUnavailable", Summary: "The service is unavailable."},
	{
		Code: ServiceUnavailable, Name: "ServiceUnavailable",
		Summary: "The hub is temporarily unavailable; retry.",
		Symptom: "Connections or requests fail with 503001; the SDKs treat it as temporary and retry.",
		Cause: "Roost is briefly not accepting work: the node is starting or shutting down, or it has " +
			"lost contact with its storage engine.",
		Resolution: "Retry with back-off. If it lasts, check that `roost serve` is running and healthy " +
			"(/healthz on the admin address) and, with an external NATS cluster, that the node can " +
			"reach it.",
	},
	{
		Code: PartitionNotFound, Name: "PartitionNotFound",
		Summary: "An internal partition is temporarily unavailable; retry.",
		Symptom: "A request fails with 503003, typically just after start-up or while the cluster is " +
			"changing.",
		Cause: "An internal piece the request needed, such as a telemetry partition stream, was " +
			"momentarily unavailable. It is a transient condition.",
		Resolution: "Retry with back-off, as for other 5xx errors. If it does not clear within a minute, " +
			"check the health of the node and of its NATS cluster.",
	},
	{Code: IotHubActivationFailed, Name: "IotHubActivationFailed", Summary: "The hub could not be activated."},
	{Code: ServerBusy, Name: "ServerBusy", Summary: "The server is busy; retry later."},
	{Code: IotHubRestoring, Name: "IotHubRestoring", Summary: "The hub is being restored."},
	{Code: ReceiveLinkOpensThrottled, Name: "ReceiveLinkOpensThrottled", Summary: "Receive links are being opened too fast; retry later."},
	{Code: ConnectionUnavailable, Name: "ConnectionUnavailable", Summary: "The connection is unavailable."},
	{Code: DeviceUnavailable, Name: "DeviceUnavailable", Summary: "The device is unavailable."},
	{Code: ConfigurationNotAvailable, Name: "ConfigurationNotAvailable", Summary: "The configuration is unavailable."},
	{Code: GroupNotAvailable, Name: "GroupNotAvailable", Summary: "The group is unavailable."},
	{Code: HostingServiceNotAvailable, Name: "HostingServiceNotAvailable", Summary: "The hosting service is unavailable."},
	{Code: GenericGatewayTimeout, Name: "GenericGatewayTimeout", Summary: "A gateway timed out."},
	{
		Code: GatewayTimeout, Name: "GatewayTimeout",
		Summary: "The device did not answer the direct method in time.",
		Symptom: "A direct method call fails with 504101 once its response timeout has passed.",
		Cause: "The call was delivered to the device, but no answer came back within " +
			"responseTimeoutInSeconds: the handler is slow or stuck, it never sends a response, or " +
			"the connection broke after delivery. .NET device SDKs older than 1.19.0 could also " +
			"lose their link silently with the same result.",
		Resolution: "Make the device's handler answer quickly (start long work in the background and reply " +
			"at once), raise responseTimeoutInSeconds (up to 300) when the work really takes that " +
			"long, and retry. Update old device SDKs.",
	},
}
