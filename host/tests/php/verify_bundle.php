<?php
// Verify an autoheal patch bundle the way a plugin does: stock libsodium, no JSON
// re-serialization. Usage: php verify_bundle.php BUNDLE PUBLIC_KEY_FILE [NOW_UNIX]
// Prints "OK <name> <version>" and exits 0, or "REFUSED: <reason>" and exits 1.

function refuse(string $why): void { fwrite(STDOUT, "REFUSED: $why\n"); exit(1); }

if (!function_exists('sodium_crypto_sign_verify_detached')) { fwrite(STDERR, "no sodium\n"); exit(2); }
[$_, $bundlePath, $keyPath] = $argv;
$now = isset($argv[3]) ? (int)$argv[3] : time();

$pk = base64_decode(trim(file_get_contents($keyPath)), true);
$keyId = substr(hash('sha256', $pk), 0, 16);

$bundle = json_decode(file_get_contents($bundlePath), true);
if (!is_array($bundle) || ($bundle['bundle_format'] ?? null) !== 1) refuse('malformed bundle');
$manifestBytes = base64_decode($bundle['manifest'], true);   // the exact signed bytes

$verified = false;
foreach ($bundle['signatures'] as $sig) {
    if ($sig['key_id'] !== $keyId) continue;
    $signature = base64_decode($sig['signature'], true);
    if ($sig['algorithm'] !== 'ed25519' || strlen($signature) !== SODIUM_CRYPTO_SIGN_BYTES
        || !sodium_crypto_sign_verify_detached($signature, $manifestBytes, $pk)) refuse('bad signature');
    $verified = true;
}
if (!$verified) refuse('unknown key');

$manifest = json_decode($manifestBytes, true);           // only now: the bytes are authentic
$module = base64_decode($bundle['module'], true);
if (strlen($module) !== $manifest['module_size_bytes']) refuse('size mismatch');
if (!hash_equals($manifest['module_sha256'], hash('sha256', $module))) refuse('hash mismatch');
if ($now >= strtotime($manifest['expires_at'])) refuse('expired');
echo "OK {$manifest['name']} {$manifest['version']}\n";
