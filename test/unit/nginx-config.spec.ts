import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nginxConfig } from '../../tools/local-stack/nginx-server.ts';

describe("the launcher's nginx config", () => {
  const config = nginxConfig(
    [
      { name: 'calculators_grpc', listenPort: 9090, protocol: 'grpc', upstreamPorts: [19091, 19092, 19093] },
      { name: 'calculators_http', listenPort: 8090, protocol: 'http', upstreamPorts: [18091, 18092, 18093] },
      { name: 'totals_http', listenPort: 8080, protocol: 'http', upstreamPorts: [18081, 18082, 18083], retryOnStatus: [502, 503, 504] },
    ],
    '/data/nginx',
  );

  it('proxies gRPC over HTTP/2 cleartext and HTTP with kept-alive upstream connections', () => {
    assert.match(config, /listen 127\.0\.0\.1:9090 http2;\s+location \/ \{\s+grpc_pass grpc:\/\/calculators_grpc;/);
    assert.match(config, /listen 127\.0\.0\.1:8090;\s+location \/ \{\s+proxy_pass http:\/\/calculators_http;/);
    assert.equal(config.match(/keepalive 32;/g)?.length, 3);
    assert.equal(config.match(/proxy_http_version 1\.1;/g)?.length, 2);
    assert.match(config, /upstream calculators_grpc \{\s+server 127\.0\.0\.1:19091 max_fails=1 fail_timeout=3s;\s+server 127\.0\.0\.1:19092 [^\n]+\s+server 127\.0\.0\.1:19093 /);
  });

  it('passes a request to the next instance only while no instance may have recorded it', () => {
    assert.match(config, /grpc_next_upstream error timeout;/);
    assert.match(config, /proxy_next_upstream error timeout;/);
    assert.match(config, /proxy_next_upstream error timeout http_502 http_503 http_504;/);
    // With non_idempotent, an Add that reached a calculator could be sent to another one: counted twice.
    assert.doesNotMatch(config.replace(/^\s*#.*$/gm, ''), /non_idempotent/);
  });

  it('runs in the foreground, as one process, writing only under its data folder', () => {
    assert.match(config, /^daemon off;$/m);
    assert.match(config, /^master_process off;$/m);
    assert.match(config, /^pid "\/data\/nginx\/nginx\.pid";$/m);
    assert.match(config, /^error_log "\/data\/nginx\/error\.log" warn;$/m);
    for (const temp of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) {
      assert.match(config, new RegExp(`${temp}_temp_path "/data/nginx/temp/${temp}";`));
    }
  });
});
