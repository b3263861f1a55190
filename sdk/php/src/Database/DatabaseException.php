<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Database;

use Autoheal\Sdk\AutohealException;

/** A database failure, with the driver's message (SQLSTATE and text; never credentials). */
final class DatabaseException extends AutohealException
{
}
