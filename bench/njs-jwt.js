// The njs peer of scripts/bench-peers: a bearer check written in njs (Debian's
// libnginx-mod-http-js 0.7.9) behind auth_request, as an nginx user without a module would write
// it. Each request: the RS256 signature with WebCrypto against the key named by `kid`, then exp,
// nbf, iss, aud and tid. No cache: njs gives each request its own VM, and nothing else keeps a
// verdict between requests.
//
// `peer` comes from `js_preload_object peer from FILE;`, written by scripts/bench-peers:
// {"keys": {KID: base64 SubjectPublicKeyInfo}, "iss": ..., "aud": ..., "tid": ...}.

function fromBase64url(text) {
    return Buffer.from(text, 'base64url');
}

async function check(r) {
    let status = 401;
    try {
        const header = r.headersIn.Authorization || '';
        const parts = header.startsWith('Bearer ') ? header.slice(7).split('.') : [];
        if (parts.length === 3) {
            const head = JSON.parse(fromBase64url(parts[0]).toString());
            const spki = head.alg === 'RS256' ? peer.keys[head.kid] : undefined;
            if (spki !== undefined) {
                const algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
                const key = await crypto.subtle.importKey('spki', Buffer.from(spki, 'base64'),
                    algorithm, false, ['verify']);
                const signed = await crypto.subtle.verify(algorithm, key, fromBase64url(parts[2]),
                    Buffer.from(parts[0] + '.' + parts[1]));
                const claims = signed ? JSON.parse(fromBase64url(parts[1]).toString()) : {};
                const now = Date.now() / 1000;
                if (signed && typeof claims.exp === 'number' && now < claims.exp
                    && !(typeof claims.nbf === 'number' && now < claims.nbf)
                    && claims.iss === peer.iss && claims.aud === peer.aud && claims.tid === peer.tid) {
                    status = 204;
                }
            }
        }
    } catch (e) {
        // A malformed token: refused as any other.
    }
    r.return(status);
}

export default { check };
