// The chat room of Cloudflare's workers-chat-demo, as `durable-bench --ws` speaks to it, on
// the WebSocket Hibernation API: the room's sockets are accepted by the runtime
// (`ctx.acceptWebSocket`), each one's name is kept in its attachment, and events arrive as
// `webSocketMessage` / `webSocketClose` / `webSocketError` calls, so that an idle room can be
// evicted from memory while its sockets stay open.
//
// GET /api/room/<room>/websocket, then on the socket:
//   client: {"name":N}           (N at most 32 characters, else {"error":"Name too long."}
//                                 and the socket is closed)
//   server: the room's last 100 messages, oldest first, then {"ready":true};
//           the others get {"joined":N}
//   client: {"message":M}        (M at most 256 characters, else {"error":"Message too long."})
//   server: to everyone, the sender included: {"name":N,"message":M,"timestamp":T}
//           (T in ms, strictly increasing per room; the message is stored first)
//   a closed socket: the others get {"quit":N}
import { DurableObject } from "cloudflare:workers";

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname.split("/");
    // ["", "api", "room", <room>, "websocket"]
    if (path.length !== 5 || path[1] !== "api" || path[2] !== "room" || !path[3] || path[4] !== "websocket") {
      return new Response("Not found", { status: 404 });
    }
    const room = decodeURIComponent(path[3]);
    if (room.length > 32) return new Response("Room name too long", { status: 404 });
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response("Expected a WebSocket upgrade", { status: 426 });
    }
    return env.ROOMS.get(env.ROOMS.idFromName(room)).fetch(request);
  },
};

// Storage keys: the message's timestamp, zero-padded so that keys sort as numbers.
const key = (timestamp) => String(timestamp).padStart(16, "0");

export class ChatRoom extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    // Every open socket of the room and its name (undefined until the socket has sent
    // {"name":..}), rebuilt from the attachments after the room was evicted.
    this.members = new Map();
    for (const ws of ctx.getWebSockets()) {
      this.members.set(ws, (ws.deserializeAttachment() || {}).name);
    }
    // The last message's timestamp, read before any event is delivered.
    this.lastTimestamp = 0;
    ctx.blockConcurrencyWhile(async () => {
      const last = await ctx.storage.list({ reverse: true, limit: 1 });
      for (const k of last.keys()) this.lastTimestamp = Number(k);
    });
  }

  async fetch(request) {
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1]);
    this.members.set(pair[1], undefined);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  async webSocketMessage(ws, raw) {
    let data;
    try {
      data = JSON.parse(typeof raw === "string" ? raw : new TextDecoder().decode(raw));
    } catch {
      ws.send(JSON.stringify({ error: "Invalid JSON." }));
      return;
    }
    if (!this.members.has(ws)) {
      // Closed while this message was on its way.
      return;
    }
    const name = this.members.get(ws);
    if (name === undefined) {
      await this.join(ws, String(data.name ?? "anonymous"));
    } else {
      this.post(name, String(data.message ?? ""), ws);
    }
  }

  async join(ws, name) {
    if (name.length > 32) {
      ws.send(JSON.stringify({ error: "Name too long." }));
      this.members.delete(ws);
      ws.close(1009, "Name too long.");
      return;
    }
    // The last 100 messages, newest first (stored as JSON text).
    const backlog = [...(await this.ctx.storage.list({ reverse: true, limit: 100 })).values()];
    if (!this.members.has(ws)) return;
    for (let i = backlog.length - 1; i >= 0; i--) ws.send(backlog[i]);
    ws.send(JSON.stringify({ ready: true }));
    ws.serializeAttachment({ name });
    this.broadcast(JSON.stringify({ joined: name }), ws);
    this.members.set(ws, name);
  }

  post(name, message, ws) {
    if (message.length > 256) {
      ws.send(JSON.stringify({ error: "Message too long." }));
      return;
    }
    const timestamp = Math.max(Date.now(), this.lastTimestamp + 1);
    this.lastTimestamp = timestamp;
    const text = JSON.stringify({ name, message, timestamp });
    // Not awaited: the output gate holds the sends below until the write is durable.
    this.ctx.storage.put(key(timestamp), text);
    this.broadcast(text);
  }

  // Sends `text` to every socket that has joined, except `skip`.
  broadcast(text, skip) {
    const broken = [];
    for (const [ws, name] of this.members) {
      if (name === undefined || ws === skip) continue;
      try {
        ws.send(text);
      } catch {
        broken.push(ws);
      }
    }
    for (const ws of broken) this.leave(ws);
  }

  leave(ws) {
    if (!this.members.has(ws)) return;
    const name = this.members.get(ws);
    this.members.delete(ws);
    if (name !== undefined) this.broadcast(JSON.stringify({ quit: name }));
  }

  async webSocketClose(ws, code, reason, wasClean) {
    this.leave(ws);
    // Completes the closing handshake (a no-op where the runtime already replied).
    try {
      ws.close(1000, "Bye.");
    } catch {}
  }

  async webSocketError(ws, error) {
    this.leave(ws);
  }
}
