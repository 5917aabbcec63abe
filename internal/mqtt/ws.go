package mqtt

import (
	"net/http"
	"strings"

	"github.com/coder/websocket"
)

// WebSocketHandler serves MQTT over WebSockets, as IoT Hub does on /$iothub/websocket. It echoes
// the MQTT subprotocol exactly as the client spelled it ("mqtt" from MQTT.js, "MQTT" from the C
// SDK): the ws package the Node SDK uses aborts when the echo differs.
func (s *Server) WebSocketHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var proto string
		for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
			for _, p := range strings.Split(h, ",") {
				if p = strings.TrimSpace(p); strings.EqualFold(p, "mqtt") && proto == "" {
					proto = p
				}
			}
		}
		if proto == "" {
			http.Error(w, "MQTT over WebSockets needs the mqtt subprotocol", http.StatusBadRequest)
			return
		}
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			Subprotocols:       []string{proto},
			InsecureSkipVerify: true, // devices send no Origin worth checking; auth is in CONNECT
			CompressionMode:    websocket.CompressionDisabled,
		})
		if err != nil {
			return
		}
		ws.SetReadLimit(int64(s.cfg.MaxPacket) + 16)
		nc := websocket.NetConn(s.ctx, ws, websocket.MessageBinary)
		var c = &certConn{Conn: nc}
		if r.TLS != nil {
			c.certs = r.TLS.PeerCertificates
		}
		s.wg.Add(1)
		defer s.wg.Done()
		s.ServeConn(c, "MqttWs")
	})
}
