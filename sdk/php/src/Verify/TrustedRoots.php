<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

use Autoheal\Sdk\AutohealException;
use Autoheal\Sdk\Support\ErrorTrap;

/**
 * The root public keys a plugin trusts (several during a rotation), by key id. Roots are
 * the plugin's own configuration: a bad one is a configuration error, not a refusal.
 */
final class TrustedRoots
{
    /** @var array<string, string> key id => 32-byte public key */
    private array $keys = [];

    /** @param list<string> $publicKeys raw 32-byte keys */
    public function __construct(array $publicKeys)
    {
        if ($publicKeys === []) {
            throw new \InvalidArgumentException('at least one trusted root key is needed');
        }
        foreach ($publicKeys as $key) {
            if (!is_string($key) || strlen($key) !== SODIUM_CRYPTO_SIGN_PUBLICKEYBYTES) {
                throw new \InvalidArgumentException('a root public key is 32 bytes');
            }
            $this->keys[KeyId::of($key)] = $key;
        }
    }

    /** @param list<string> $base64Keys canonical base64 of 32-byte keys */
    public static function fromBase64(array $base64Keys): self
    {
        $keys = [];
        foreach ($base64Keys as $text) {
            if (!is_string($text) || !Base64::isCanonical($text)) {
                throw new \InvalidArgumentException('a root public key must be canonical base64');
            }
            $keys[] = base64_decode($text, true);
        }
        return new self($keys);
    }

    /**
     * Key files as `autoheal keys generate` writes them: base64 of the 32 bytes and a
     * newline (only line-ending whitespace is tolerated, not spaces inside).
     *
     * @param list<string> $paths
     */
    public static function fromFiles(array $paths): self
    {
        $texts = [];
        foreach ($paths as $path) {
            $text = ErrorTrap::call(
                static fn () => file_get_contents($path),
                static fn (string $w): AutohealException => new AutohealException('cannot read trusted root ' . $path . ': ' . $w)
            );
            if (!is_string($text)) {
                throw new AutohealException('cannot read trusted root ' . $path);
            }
            $texts[] = rtrim($text, "\r\n");
        }
        return self::fromBase64($texts);
    }

    public function get(string $keyId): ?string
    {
        return $this->keys[$keyId] ?? null;
    }

    /** @return list<string> */
    public function keyIds(): array
    {
        return array_keys($this->keys);
    }
}
