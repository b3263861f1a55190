<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Database;

use Autoheal\Sdk\Operations\Syntax;
use Autoheal\Sdk\Support\Text;

/**
 * Which tables are the plugin's own (reported in its state): a list of names, or every
 * table whose name starts with a prefix. The journal's own tables never are.
 */
final class TableSelection
{
    /** @var list<string>|null */
    private ?array $names;
    private ?string $prefix;

    /** @param list<string>|null $names */
    private function __construct(?array $names, ?string $prefix)
    {
        $this->names = $names;
        $this->prefix = $prefix;
    }

    /** @param list<string> $names */
    public static function named(array $names): self
    {
        foreach ($names as $name) {
            if (!is_string($name) || !Syntax::isIdentifier($name)) {
                throw new \InvalidArgumentException('table names must be identifiers');
            }
        }
        return new self(array_values(array_unique($names)), null);
    }

    public static function prefixed(string $prefix): self
    {
        if ($prefix === '' || preg_match('/^[A-Za-z_][A-Za-z0-9_]*$/D', $prefix) !== 1) {
            throw new \InvalidArgumentException('a table prefix must be a non-empty identifier');
        }
        return new self(null, $prefix);
    }

    /** "a,b,c" → named, "prefix*" → prefixed (for environment variables). */
    public static function parse(string $spec): self
    {
        $spec = trim($spec);
        if (Text::endsWith($spec, '*')) {
            return self::prefixed(substr($spec, 0, -1));
        }
        return self::named(array_values(array_filter(array_map('trim', explode(',', $spec)), static fn (string $s): bool => $s !== '')));
    }

    public function matches(string $table): bool
    {
        if (Text::contains($table, 'autoheal_journal_')) {
            return false;
        }
        if ($this->names !== null) {
            return in_array($table, $this->names, true);
        }
        return Text::startsWith($table, (string) $this->prefix);
    }

    /**
     * @param list<string> $existing
     * @return list<string>
     */
    public function select(array $existing): array
    {
        return array_values(array_filter($existing, fn (string $t): bool => $this->matches($t)));
    }
}
