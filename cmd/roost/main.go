// Command roost is a self-hosted IoT hub that speaks Azure IoT Hub's protocols.
//
// Run `roost serve` to start a hub, and `roost help` for the other commands.
package main

import (
	"os"

	"github.com/roost-iot/roost/internal/app"
)

func main() {
	os.Exit(app.Run(os.Args[1:], os.Stdout, os.Stderr))
}
