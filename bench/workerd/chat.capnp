using Workerd = import "/workerd/workerd.capnp";

# The chat room of `chat.js` (a Durable Object per room, WebSocket Hibernation API), for
# `durable-bench --ws` (see chat.sh). Like config.capnp, the storage directory and the
# listening address are overridden at run time by `--directory-path do-storage=<abs path>`
# and `--socket-addr http=127.0.0.1:<port>`.
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .chatWorker),
    (name = "do-storage", disk = (path = "data", writable = true)),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:8787", http = (), service = "main"),
  ],
);

const chatWorker :Workerd.Worker = (
  modules = [
    (name = "chat.js", esModule = embed "chat.js"),
  ],
  compatibilityDate = "2025-09-01",
  durableObjectNamespaces = [
    (className = "ChatRoom", uniqueKey = "chat-example-7a41d9", enableSql = true),
  ],
  durableObjectStorage = (localDisk = "do-storage"),
  bindings = [
    (name = "ROOMS", durableObjectNamespace = "ChatRoom"),
  ],
);
