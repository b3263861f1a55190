<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Support;

use Autoheal\Sdk\Verify\Dsse;
use Autoheal\Sdk\Verify\KeyId;

/**
 * Signed material made the way autoheal makes it (sdk/PROTOCOL.md, patches/README.md):
 * a root key, a command key certified by it, bundles signed by the root over their raw
 * manifest bytes, and commands as DSSE envelopes over canonical JSON. Each piece can be
 * overridden or tampered with to exercise one refusal.
 */
final class Fixtures
{
    public const INSTALL_ID = '6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b';
    public const NOW = '2026-12-02T10:30:00Z';

    /** @var array{secret: string, public: string} */
    public array $root;
    /** @var array{secret: string, public: string} */
    public array $commandKey;
    public string $module;
    private int $sequence = 0;

    public function __construct()
    {
        $this->root = self::keyPair();
        $this->commandKey = self::keyPair();
        $this->module = "\0asm\x01\0\0\0" . random_bytes(40);
    }

    /** @return array{secret: string, public: string} */
    public static function keyPair(): array
    {
        $pair = sodium_crypto_sign_keypair();
        return ['secret' => sodium_crypto_sign_secretkey($pair), 'public' => sodium_crypto_sign_publickey($pair)];
    }

    public function rootBase64(): string
    {
        return base64_encode($this->root['public']);
    }

    /**
     * Object keys sorted, no insignificant whitespace (the server's canonical JSON).
     *
     * @param mixed $value
     */
    public static function canonicalJson($value): string
    {
        return json_encode(self::sortKeys($value), JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PRESERVE_ZERO_FRACTION | JSON_THROW_ON_ERROR);
    }

    /**
     * @param mixed $value
     * @return mixed
     */
    private static function sortKeys($value)
    {
        if ($value instanceof \stdClass) {
            $value = get_object_vars($value);
            ksort($value, SORT_STRING);
            return (object) array_map([self::class, 'sortKeys'], $value);
        }
        if (is_array($value)) {
            if ($value !== [] && array_keys($value) !== range(0, count($value) - 1)) {
                ksort($value, SORT_STRING);
                return (object) array_map([self::class, 'sortKeys'], $value);
            }
            return array_map([self::class, 'sortKeys'], $value);
        }
        return $value;
    }

    /**
     * A DSSE envelope signed by each of $signers over PAE($type, $payload).
     *
     * @param list<array{secret: string, public: string}> $signers
     * @return array<string, mixed>
     */
    public static function envelope(string $type, string $payload, array $signers): array
    {
        $signatures = [];
        foreach ($signers as $key) {
            $signatures[] = [
                'keyid' => KeyId::of($key['public']),
                'sig' => base64_encode(sodium_crypto_sign_detached(Dsse::pae($type, $payload), $key['secret'])),
            ];
        }
        return ['payloadType' => $type, 'payload' => base64_encode($payload), 'signatures' => $signatures];
    }

    /**
     * @param array<string, mixed> $overrides
     * @return array<string, mixed>
     */
    public function certificatePayload(array $overrides = []): array
    {
        return array_merge([
            'certificate_format' => 1,
            'role' => 'command',
            'key_id' => KeyId::of($this->commandKey['public']),
            'public_key' => base64_encode($this->commandKey['public']),
            'not_before' => '2026-12-02T10:00:00Z',
            'not_after' => '2027-01-01T10:00:00Z',
        ], $overrides);
    }

    /**
     * @param array<string, mixed> $overrides
     * @param list<array{secret: string, public: string}>|null $signers default: the root
     * @return array<string, mixed>
     */
    public function certificate(array $overrides = [], ?array $signers = null): array
    {
        return self::envelope(Dsse::CERTIFICATE_TYPE, self::canonicalJson($this->certificatePayload($overrides)), $signers ?? [$this->root]);
    }

    /**
     * @param array<string, mixed> $overrides
     * @return array<string, mixed>
     */
    public function manifest(array $overrides = []): array
    {
        return array_merge([
            'name' => 'add_missing_column',
            'version' => '1.0.3',
            'patch_type' => 'database_patch',
            'description' => 'Adds a column the plugin expects but the database lacks.',
            'platforms' => ['all'],
            'plugin_versions' => '>=1.0.0, <4.0.0',
            'module_sha256' => hash('sha256', $this->module),
            'module_size_bytes' => strlen($this->module),
            'created_at' => '2026-11-30T04:56:55Z',
            'expires_at' => '2031-11-29T04:56:55Z',
            'abi_version' => 1,
            'operations' => ['add_column'],
            'limits' => ['fuel' => 2000000, 'max_memory_bytes' => 2097152, 'deadline_ms' => 50, 'max_output_bytes' => 262144],
            'params_schema' => [
                'column' => ['type' => 'string', 'required' => true, 'format' => 'identifier'],
                'column_type' => ['type' => 'string', 'required' => true, 'format' => 'sql_column_type'],
                'table' => ['type' => 'string', 'required' => true, 'format' => 'identifier'],
            ],
        ], $overrides);
    }

    /**
     * The bundle file's bytes: pretty JSON, as `autoheal patch sign` writes it.
     *
     * @param array<string, mixed> $manifest overrides
     * @param callable(array<string, mixed>): array<string, mixed>|null $tamper edits the file's fields after signing
     * @param list<array{secret: string, public: string}>|null $signers default: the root
     */
    public function bundle(array $manifest = [], ?callable $tamper = null, ?array $signers = null, ?string $manifestBytes = null): string
    {
        $bytes = $manifestBytes ?? json_encode($this->manifest($manifest), JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
        $file = [
            'bundle_format' => 1,
            'manifest' => base64_encode($bytes),
            'signatures' => array_map(static fn (array $k): array => [
                'key_id' => KeyId::of($k['public']),
                'algorithm' => 'ed25519',
                'signature' => base64_encode(sodium_crypto_sign_detached($bytes, $k['secret'])),
            ], $signers ?? [$this->root]),
            'module' => base64_encode($this->module),
        ];
        if ($tamper !== null) {
            $file = $tamper($file);
        }
        return json_encode($file, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR) . "\n";
    }

    /**
     * A signed command payload for $bundle (its name/version from the default manifest).
     *
     * @param array<string, mixed> $overrides
     * @return array<string, mixed>
     */
    public function payload(string $bundle, array $overrides = []): array
    {
        $type = $overrides['command_type'] ?? 'apply_patch';
        $payload = [
            'bundle' => ['name' => 'add_missing_column', 'sha256' => hash('sha256', $bundle), 'version' => '1.0.3'],
            'command_format' => 1,
            'command_type' => $type,
            'expires_at' => '2026-12-02T11:00:00Z',
            'healing_log_id' => self::uuid(),
            'id' => self::uuid(),
            'install_id' => self::INSTALL_ID,
            'issued_at' => '2026-12-02T10:00:00Z',
            'params' => ['column' => 'merchant_fee', 'column_type' => 'DECIMAL(10,2)', 'table' => 'wp_molam_orders'],
            'sequence' => ++$this->sequence,
        ];
        if ($type === 'rollback') {
            $payload['restore_operations'] = [['column' => 'merchant_fee', 'op' => 'drop_column', 'table' => 'wp_molam_orders']];
        } else {
            $payload['operations'] = [['column' => 'merchant_fee', 'column_type' => 'DECIMAL(10,2)', 'op' => 'add_column', 'table' => 'wp_molam_orders']];
        }
        return array_merge($payload, $overrides);
    }

    /**
     * One poll item, as the server lists it: the unsigned copy, the signed envelope and the
     * certificate.
     *
     * @param array<string, mixed> $payload from payload()
     * @param list<array{secret: string, public: string}>|null $signers default: the command key
     * @param array<string, mixed>|null $certificate default: certificate()
     * @return array<string, mixed>
     */
    public function item(array $payload, ?array $signers = null, ?array $certificate = null, ?string $payloadBytes = null): array
    {
        return [
            'id' => $payload['id'] ?? self::uuid(),
            'plugin_id' => self::INSTALL_ID,
            'healing_log_id' => $payload['healing_log_id'] ?? self::uuid(),
            'command_type' => $payload['command_type'] ?? 'apply_patch',
            'command_payload' => ['type' => $payload['command_type'] ?? 'apply_patch', 'unsigned' => true],
            'priority' => 8,
            'status' => 'pending',
            'issued_at' => '2026-12-02T10:00:00Z',
            'leased_until' => '2026-12-02T10:40:00Z',
            'deliveries' => 1,
            'sequence' => $payload['sequence'] ?? 0,
            'signed' => self::envelope(Dsse::COMMAND_TYPE, $payloadBytes ?? self::canonicalJson($payload), $signers ?? [$this->commandKey]),
            'certificate' => $certificate ?? $this->certificate(),
        ];
    }

    /** @param array<string, mixed> $item */
    public static function json(array $item): string
    {
        return json_encode($item, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
    }

    public static function uuid(): string
    {
        $b = random_bytes(16);
        $b[6] = chr((ord($b[6]) & 0x0f) | 0x40);
        $b[8] = chr((ord($b[8]) & 0x3f) | 0x80);
        return vsprintf('%s%s-%s-%s-%s-%s%s%s', str_split(bin2hex($b), 4));
    }
}
