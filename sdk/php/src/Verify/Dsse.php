<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

/** DSSE's pre-authentication encoding: what a DSSE signature covers. */
final class Dsse
{
    public const COMMAND_TYPE = 'application/vnd.autoheal.command+json';
    public const CERTIFICATE_TYPE = 'application/vnd.autoheal.certificate+json';

    private function __construct()
    {
    }

    /**
     * `DSSEv1 SP len(type) SP type SP len(body) SP body`, lengths in bytes as decimal ASCII.
     * The type is inside the signed bytes, so a certificate cannot pass for a command.
     */
    public static function pae(string $payloadType, string $payload): string
    {
        return 'DSSEv1 ' . strlen($payloadType) . ' ' . $payloadType . ' ' . strlen($payload) . ' ' . $payload;
    }
}
