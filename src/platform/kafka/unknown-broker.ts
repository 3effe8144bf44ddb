import { kGetConnection, NetworkError, type Base, type Broker, type Callback, type Connection } from '@platformatic/kafka';

/**
 * @platformatic/kafka (1.35) looks a broker up by node id in its cached cluster metadata and asks
 * for a connection to whatever it found, without checking that it found one. When a group
 * coordinator or partition leader is named that the cached metadata does not list (a broker of a
 * cluster killed or just back), it reads `host` of undefined inside a socket callback: an uncaught
 * TypeError that ends the process. Seen as all three totals consumers dying at once when a broker
 * was killed (`npm run chaos -- --cluster`).
 *
 * Guarded, that lookup fails as a network error, which the library retries and our loops handle
 * like any other, and the cached metadata is dropped so that the next attempt reads the cluster
 * again rather than the list that lacks the broker.
 */
export function guardUnknownBrokers<C extends Base>(client: C): C {
  const connect = client[kGetConnection].bind(client);
  client[kGetConnection] = (broker: Broker | undefined, callback: Callback<Connection>) => {
    if (broker === undefined) {
      client.clearMetadata();
      callback(new NetworkError('a broker the client needs is not in its cluster metadata (restarted or fenced); the metadata is read again'), undefined as never);
      return;
    }
    connect(broker, callback);
  };
  return client;
}
