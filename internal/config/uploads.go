package config

import (
	"net"
	"strconv"
	"strings"
	"time"
)

// uploadSettings are the file upload settings.
func uploadSettings() []setting {
	dur := func(name, usage string, f func(*Config) *time.Duration) setting {
		return setting{name: name, usage: usage,
			set: func(c *Config, v string) error {
				d, err := time.ParseDuration(v)
				*f(c) = d
				return err
			},
			get: func(c *Config) string { return f(c).String() }}
	}
	str := func(name, usage string, f func(*Config) *string) setting {
		return setting{name: name, usage: usage,
			set: func(c *Config, v string) error { *f(c) = v; return nil },
			get: func(c *Config) string { return *f(c) }}
	}
	return []setting{
		dur("file-upload-sas-ttl", "how long a file upload's SAS URI (and the upload's slot among the device's 10) stays valid, 1m to 24h",
			func(c *Config) *time.Duration { return &c.FileUploadSASTTL }),
		{name: "file-upload-notifications", usage: "queue a notification for the service side when a device completes an upload (true or false)",
			set: func(c *Config, v string) error {
				b, err := strconv.ParseBool(v)
				c.FileUploadNotifications = b
				return err
			},
			get: func(c *Config) string { return strconv.FormatBool(c.FileUploadNotifications) }},
		dur("file-notification-ttl", "how long a file upload notification waits to be read, 1m to 48h",
			func(c *Config) *time.Duration { return &c.FileNotificationTTL }),
		dur("file-notification-lock", "how long a received file upload notification stays locked, 5s to 300s",
			func(c *Config) *time.Duration { return &c.FileNotificationLock }),
		{name: "file-notification-max-delivery", usage: "how often a file upload notification is handed out before it is dropped, 1 to 100",
			set: func(c *Config, v string) error {
				n, err := strconv.Atoi(v)
				c.FileNotificationMaxDelivery = n
				return err
			},
			get: func(c *Config) string { return strconv.Itoa(c.FileNotificationMaxDelivery) }},
		str("blob-connection-string", "Azure Storage connection string: devices upload there instead of to the built-in blob store (secret)",
			func(c *Config) *string { return &c.BlobConnectionString }),
		str("blob-container", "blob container uploads go to (3 to 63 lower-case letters, digits and '-')",
			func(c *Config) *string { return &c.BlobContainer }),
		str("blob-host", "host[:port] devices are told to upload to with the built-in store (default: --hostname)",
			func(c *Config) *string { return &c.BlobHost }),
	}
}

// reservedContainers are first path segments of IoT Hub's and Roost's REST API: the built-in
// blob endpoint serves /{container}/..., so a container must not shadow any of them.
var reservedContainers = map[string]bool{
	"devices": true, "twins": true, "messages": true, "jobs": true, "configurations": true, "statistics": true,
	"digitaltwins": true, "modules": true, "files": true, "query": true, "edgedevices": true, "faults": true,
	"healthz": true, "metrics": true, "errors": true, "logs": true,
}

func (c *Config) validateUploads(bad func(name, format string, args ...any)) {
	if c.FileUploadSASTTL < time.Minute || c.FileUploadSASTTL > 24*time.Hour {
		bad("file-upload-sas-ttl", "%s is not between 1m and 24h", c.FileUploadSASTTL)
	}
	if c.FileNotificationTTL < time.Minute || c.FileNotificationTTL > 48*time.Hour {
		bad("file-notification-ttl", "%s is not between 1m and 48h", c.FileNotificationTTL)
	}
	if c.FileNotificationLock < 5*time.Second || c.FileNotificationLock > 300*time.Second {
		bad("file-notification-lock", "%s is not between 5s and 300s", c.FileNotificationLock)
	}
	if c.FileNotificationMaxDelivery < 1 || c.FileNotificationMaxDelivery > 100 {
		bad("file-notification-max-delivery", "%d is not between 1 and 100", c.FileNotificationMaxDelivery)
	}
	if why := containerProblem(c.BlobContainer); why != "" {
		bad("blob-container", "%q %s", c.BlobContainer, why)
	}
	if c.BlobHost != "" {
		host := c.BlobHost
		if h, port, err := net.SplitHostPort(c.BlobHost); err == nil {
			host = h
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				bad("blob-host", "%q has a port that is not a number from 1 to 65535", c.BlobHost)
			}
		}
		if net.ParseIP(host) == nil && !validHostName(host) {
			bad("blob-host", "%q is not host[:port]", c.BlobHost)
		}
	}
	if c.BlobConnectionString != "" && (!strings.Contains(strings.ToLower(c.BlobConnectionString), "accountkey=") &&
		!strings.Contains(strings.ToLower(c.BlobConnectionString), "usedevelopmentstorage=true")) {
		bad("blob-connection-string", "has no AccountKey (Roost signs upload SAS tokens with the account key)")
	}
}

// containerProblem applies the Blob service's container naming rules, plus the names the blob
// endpoint may not take.
func containerProblem(name string) string {
	if len(name) < 3 || len(name) > 63 {
		return "is not 3 to 63 characters long"
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		ok := ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-'
		if !ok {
			return "may hold only lower-case letters, digits and '-'"
		}
		if ch == '-' && (i == 0 || i == len(name)-1 || name[i-1] == '-') {
			return "must start and end with a letter or digit and have no '--'"
		}
	}
	if reservedContainers[name] {
		return "is a path of the hub's REST API; choose another name"
	}
	return ""
}
