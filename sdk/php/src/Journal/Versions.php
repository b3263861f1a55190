<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Journal;

use Autoheal\Sdk\Verify\SemVer;

/** The rule both journals keep for bundle versions: only ever move up. */
final class Versions
{
    private function __construct()
    {
    }

    /** The newer of what is recorded and what was just accepted. */
    public static function newer(?string $recorded, string $accepted): string
    {
        if (!SemVer::isValid($accepted)) {
            throw new JournalException('a bundle version to record is not a semantic version');
        }
        if ($recorded === null || !SemVer::isValid($recorded)) {
            return $accepted;
        }
        return SemVer::compare($accepted, $recorded) > 0 ? $accepted : $recorded;
    }
}
