<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

use Autoheal\Sdk\Support\Json;
use Autoheal\Sdk\Support\JsonException;

/**
 * Checks 13 to 15 on a bundle file's exact bytes: size, the SHA-256 the signed command
 * names, then the bundle itself against the trusted roots — envelope, canonical base64,
 * signatures over the raw manifest bytes (bundles are not DSSE: the manifest is signed as
 * it travels), the manifest, and the module's size and hash.
 */
final class BundleVerifier
{
    public const MAX_BYTES = 8 * 1024 * 1024;

    private TrustedRoots $roots;

    public function __construct(TrustedRoots $roots)
    {
        $this->roots = $roots;
    }

    private static function decode(string $text, string $what): string
    {
        if (!Base64::isCanonical($text)) {
            throw new Refusal(Reason::BUNDLE_INVALID, 'the bundle\'s ' . $what . ' is not canonical base64');
        }
        return (string) base64_decode($text, true);
    }

    /** @throws Refusal */
    public function verify(string $bytes, BundleRef $expected): Manifest
    {
        if (strlen($bytes) > self::MAX_BYTES) {
            throw new Refusal(Reason::BUNDLE_TOO_LARGE, 'the bundle is ' . strlen($bytes) . ' bytes, more than ' . self::MAX_BYTES);
        }
        if (!hash_equals($expected->sha256(), hash('sha256', $bytes))) {
            throw new Refusal(Reason::BUNDLE_HASH_MISMATCH, 'the bundle file is not the one the command names (SHA-256 differs)');
        }
        try {
            $decoded = Json::decode($bytes);
        } catch (JsonException $e) {
            throw new Refusal(Reason::BUNDLE_INVALID, 'the bundle is not JSON');
        }
        $file = Shape::of($decoded, Reason::BUNDLE_INVALID, 'bundle')->only(['bundle_format', 'manifest', 'signatures', 'module']);
        if ($file->int('bundle_format') !== 1) {
            throw $file->refuse('has bundle_format ' . $file->int('bundle_format') . ', this SDK reads 1');
        }
        $signatures = [];
        foreach ($file->list('signatures') as $i => $raw) {
            $sig = Shape::of($raw, Reason::BUNDLE_INVALID, 'bundle.signatures[' . $i . ']')->only(['key_id', 'algorithm', 'signature']);
            $signatures[] = [$sig->string('key_id'), $sig->string('algorithm'), $sig->string('signature')];
        }
        // The bundle's base64 is held to the canonical form like every other; a bundle that
        // breaks it is an invalid bundle (the reference verifier's Malformed).
        $manifestBytes = self::decode($file->string('manifest'), 'manifest');

        $trusted = false;
        foreach ($signatures as [$keyId, $algorithm, $text]) {
            $key = $this->roots->get($keyId);
            if ($key === null) {
                continue;   // a signature by a key this plugin does not know is skipped, unread
            }
            $trusted = true;
            $signature = Base64::isCanonical($text) ? (string) base64_decode($text, true) : '';
            if ($algorithm !== 'ed25519' || !DecodedEnvelope::verifies($signature, $manifestBytes, $key)) {
                throw new Refusal(Reason::BUNDLE_SIGNATURE_INVALID, 'the bundle signature by key ' . $keyId . ' does not verify');
            }
        }
        if (!$trusted) {
            throw new Refusal(Reason::BUNDLE_UNKNOWN_KEY, 'the bundle carries no signature by a trusted root');
        }

        // From here on the manifest bytes are authentic.
        $manifest = Manifest::parse($manifestBytes);
        $module = self::decode($file->string('module'), 'module');
        if (strlen($module) !== $manifest->moduleSize()) {
            throw new Refusal(Reason::BUNDLE_MODULE_MISMATCH, 'the module is ' . strlen($module) . ' bytes, the manifest says ' . $manifest->moduleSize());
        }
        if (!hash_equals($manifest->moduleSha256(), hash('sha256', $module))) {
            throw new Refusal(Reason::BUNDLE_MODULE_MISMATCH, 'the module\'s SHA-256 is not the manifest\'s');
        }
        return $manifest;
    }
}
