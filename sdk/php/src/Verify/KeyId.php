<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

/** autoheal's key id: the first 8 bytes of SHA-256 of the 32-byte public key, lower-case hex. */
final class KeyId
{
    private function __construct()
    {
    }

    public static function of(string $publicKey): string
    {
        return substr(hash('sha256', $publicKey), 0, 16);
    }
}
