<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Support;

/**
 * Runs a call with PHP warnings turned into an exception, for the built-ins that report
 * failure as "false plus a warning" (fopen, rename, file_get_contents, …). The SDK never
 * hides such a warning with `@`: the warning's text becomes the typed exception's message.
 */
final class ErrorTrap
{
    private function __construct()
    {
    }

    /**
     * @template T
     * @param callable(): T $call
     * @param callable(string): \Throwable $wrap builds the exception from the warning's text
     * @return T
     */
    public static function call(callable $call, callable $wrap)
    {
        $warning = null;
        set_error_handler(static function (int $severity, string $message) use (&$warning): bool {
            $warning = $message;
            return true;
        });
        try {
            $result = $call();
        } finally {
            restore_error_handler();
        }
        if ($warning !== null) {
            throw $wrap($warning);
        }
        return $result;
    }
}
