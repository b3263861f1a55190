<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Journal;

use Autoheal\Sdk\AutohealException;

/**
 * The journal cannot be read or written. Nothing is verified or applied without it: a
 * journal that cannot be trusted could let a replay through.
 */
final class JournalException extends AutohealException
{
}
