<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Verify;

/**
 * The closed set of refusal reasons (sdk/PROTOCOL.md, "What a plugin checks, in order"),
 * numbered by the check that yields them. `ok` is the reason of an acceptance.
 */
final class Reason
{
    public const OK = 'ok';
    public const MALFORMED = 'malformed';                                       // 1, 9
    public const NON_CANONICAL_BASE64 = 'non_canonical_base64';                 // 2
    public const CERTIFICATE_UNKNOWN_KEY = 'certificate_unknown_key';           // 3
    public const CERTIFICATE_SIGNATURE_INVALID = 'certificate_signature_invalid'; // 4
    public const CERTIFICATE_INVALID = 'certificate_invalid';                   // 5
    public const CERTIFICATE_EXPIRED = 'certificate_expired';                   // 6
    public const CERTIFICATE_NOT_YET_VALID = 'certificate_not_yet_valid';       // 6
    public const UNKNOWN_KEY = 'unknown_key';                                   // 7
    public const SIGNATURE_INVALID = 'signature_invalid';                       // 8
    public const WRONG_INSTALL = 'wrong_install';                               // 10
    public const COMMAND_EXPIRED = 'command_expired';                           // 11
    public const REPLAYED = 'replayed';                                         // 12
    public const OUT_OF_ORDER = 'out_of_order';                                 // 12
    public const BUNDLE_TOO_LARGE = 'bundle_too_large';                         // 13
    public const BUNDLE_HASH_MISMATCH = 'bundle_hash_mismatch';                 // 14
    public const BUNDLE_UNKNOWN_KEY = 'bundle_unknown_key';                     // 15
    public const BUNDLE_SIGNATURE_INVALID = 'bundle_signature_invalid';         // 15
    public const BUNDLE_INVALID = 'bundle_invalid';                             // 15
    public const BUNDLE_MODULE_MISMATCH = 'bundle_module_mismatch';             // 15
    public const BUNDLE_EXPIRED = 'bundle_expired';                             // 16
    public const BUNDLE_MISMATCH = 'bundle_mismatch';                           // 17
    public const DOWNGRADE = 'downgrade';                                       // 18
    public const INVALID_OPERATION = 'invalid_operation';                       // 19
    public const UNDECLARED_OPERATION = 'undeclared_operation';                 // 19

    private function __construct()
    {
    }

    /** @return list<string> every refusal reason */
    public static function refusals(): array
    {
        $all = (new \ReflectionClass(self::class))->getConstants();
        unset($all['OK']);
        return array_values($all);
    }
}
