<?php

declare(strict_types=1);

namespace Autoheal\Sdk\Tests\Unit;

use Autoheal\Sdk\Tests\Support\Php74AstCheck;
use PHPUnit\Framework\TestCase;

/**
 * The SDK must run on PHP 7.4 (what WooCommerce supports) although the suite runs on 8.x:
 * this scans the shipped code's tokens for syntax and functions 7.4 does not have, and for
 * extensions composer.json does not require. (A heuristic, not a 7.4 parser: run `php7.4 -l`
 * over src/ where a 7.4 binary exists.)
 */
final class Php74CompatibilityTest extends TestCase
{
    private const PHP8_FUNCTIONS = [
        'str_contains', 'str_starts_with', 'str_ends_with', 'array_is_list', 'get_debug_type', 'fdiv',
        'preg_last_error_msg', 'get_resource_id', 'array_find', 'json_validate', 'mb_str_pad',
        'http_get_last_response_headers', 'fdatasync',
    ];
    private const PHP8_CLASSES = ['ValueError', 'Stringable', 'WeakMap', 'UnhandledMatchError', 'ReturnTypeWillChange', 'AllowDynamicProperties'];
    /** Functions of extensions composer.json does not require (curl is optional, in CurlTransport only). */
    private const EXTENSION_PREFIXES = ['mb_', 'ctype_', 'iconv', 'intl', 'bc', 'gmp_', 'sqlite_'];

    /** @return array<string, array{string}> */
    public function files(): array
    {
        $root = dirname(__DIR__, 2);
        $files = [$root . '/autoload.php', $root . '/bin/autoheal-verify'];
        foreach (['src', 'examples'] as $dir) {
            $it = new \RecursiveIteratorIterator(new \RecursiveDirectoryIterator($root . '/' . $dir, \FilesystemIterator::SKIP_DOTS));
            foreach ($it as $file) {
                if (substr((string) $file, -4) === '.php') {
                    $files[] = (string) $file;
                }
            }
        }
        sort($files);
        $out = [];
        foreach ($files as $f) {
            $out[substr($f, strlen($root) + 1)] = [$f];
        }
        return $out;
    }

    /** @dataProvider files */
    public function testRunsOnPhp74(string $file): void
    {
        $source = (string) file_get_contents($file);
        $problems = array_merge(self::scan($source, strpos($file, '/Http/CurlTransport.php') !== false), self::declareStrict($source, $file));
        if (Php74AstCheck::isAvailable()) {
            $problems = array_merge($problems, Php74AstCheck::check($source));
        }
        self::assertSame([], $problems, $file);
    }

    /** @return list<string> */
    private static function declareStrict(string $source, string $file): array
    {
        return preg_match('/declare\(strict_types=1\);/', $source) === 1 ? [] : [basename($file) . ': no declare(strict_types=1)'];
    }

    /**
     * @return list<string>
     */
    public static function scan(string $source, bool $curlAllowed = false): array
    {
        $tokens = array_values(array_filter(token_get_all($source), static fn ($t): bool => !is_array($t) || !in_array($t[0], [T_WHITESPACE, T_COMMENT, T_DOC_COMMENT], true)));
        $lines = explode("\n", $source);
        $problems = [];
        $text = static fn ($t): string => is_array($t) ? $t[1] : $t;
        $id = static fn ($t): int => is_array($t) ? $t[0] : -1;
        $line = static fn ($t): int => is_array($t) ? $t[2] : 0;
        $n = count($tokens);
        $named = static function ($t) use ($id): bool {
            return in_array($id($t), array_filter([T_STRING, defined('T_NAME_QUALIFIED') ? T_NAME_QUALIFIED : null, defined('T_NAME_FULLY_QUALIFIED') ? T_NAME_FULLY_QUALIFIED : null]), true);
        };
        $bare = static fn ($t): string => strtolower(ltrim(substr($text($t), (int) strrpos('\\' . $text($t), '\\')), '\\'));
        $forbiddenTokens = ['T_MATCH' => 'match', 'T_ENUM' => 'enum', 'T_READONLY' => 'readonly', 'T_NULLSAFE_OBJECT_OPERATOR' => '?->'];
        for ($i = 0; $i < $n; $i++) {
            $t = $tokens[$i];
            $prev = $tokens[$i - 1] ?? null;
            $next = $tokens[$i + 1] ?? null;
            $at = 'line ' . $line($t) . ': ';
            foreach ($forbiddenTokens as $const => $what) {
                if (defined($const) && $id($t) === constant($const)) {
                    $problems[] = $at . $what;
                }
            }
            if (defined('T_ATTRIBUTE') && $id($t) === T_ATTRIBUTE) {
                // PHP 7.4 reads "#[…]" as a comment to the end of its line: an attribute is
                // harmless only alone on its line.
                if (preg_match('/^\s*#\[[^\]]*\]\s*$/', $lines[$line($t) - 1] ?? '') !== 1) {
                    $problems[] = $at . 'an attribute that is not alone on its line';
                }
            }
            if ($named($t) && $text($next) === '(' && !in_array($id($prev), [T_OBJECT_OPERATOR, T_DOUBLE_COLON, T_FUNCTION, T_NEW], true)) {
                $fn = $bare($t);
                if (in_array($fn, self::PHP8_FUNCTIONS, true)) {
                    $problems[] = $at . $fn . '() is PHP 8';
                }
                foreach (self::EXTENSION_PREFIXES as $prefix) {
                    if (strpos($fn, $prefix) === 0) {
                        $problems[] = $at . $fn . '() needs an extension composer.json does not require';
                    }
                }
                if (!$curlAllowed && strpos($fn, 'curl_') === 0 && $fn !== 'curl_init') {
                    $problems[] = $at . $fn . '() outside CurlTransport';
                }
            }
            if ($named($t) && in_array($bare($t), array_map('strtolower', self::PHP8_CLASSES), true)) {
                $problems[] = $at . $text($t) . ' is a PHP 8 class';
            }
            // Named arguments: "(name:" or ", name:".
            if ($id($t) === T_STRING && $text($next) === ':' && in_array($text($prev), ['(', ','], true)) {
                $problems[] = $at . 'named argument ' . $text($t);
            }
            // throw as an expression (after ':' it is a case label's statement).
            if ($id($t) === T_THROW && (in_array($text($prev), ['=', ',', '(', '?'], true) || in_array($id($prev), [T_COALESCE, T_DOUBLE_ARROW], true))) {
                $problems[] = $at . 'throw as an expression';
            }
            // $object::class
            if ($id($t) === T_VARIABLE && $id($next) === T_DOUBLE_COLON && $id($tokens[$i + 2] ?? null) === T_CLASS) {
                $problems[] = $at . '$object::class';
            }
            // First-class callable syntax f(...)
            if ($text($t) === '(' && $id($next) === T_ELLIPSIS && $text($tokens[$i + 2] ?? null) === ')') {
                $problems[] = $at . 'first-class callable syntax';
            }
            // catch (Type) without a variable.
            if ($id($t) === T_CATCH) {
                $j = $i + 2;
                while ($j < $n && $text($tokens[$j]) !== ')' && $id($tokens[$j]) !== T_VARIABLE) {
                    $j++;
                }
                if ($j < $n && $text($tokens[$j]) === ')') {
                    $problems[] = $at . 'catch without a variable';
                }
            }
            // Declarations: parameter lists and return types.
            if ($id($t) === T_FUNCTION || $id($t) === T_FN) {
                $problems = array_merge($problems, self::signature($tokens, $i, $text, $id, $line));
            }
        }
        return $problems;
    }

    /**
     * Union, mixed, never and static types, constructor promotion and trailing commas in
     * the declaration starting at $start (also `use (…)` of a closure).
     *
     * @param list<mixed> $tokens
     * @return list<string>
     */
    private static function signature(array $tokens, int $start, callable $text, callable $id, callable $line): array
    {
        $problems = [];
        $i = $start + 1;
        $n = count($tokens);
        while ($i < $n && $text($tokens[$i]) !== '(') {
            $i++;
        }
        $isConstructor = $text($tokens[$i - 1] ?? null) === '__construct';
        for ($group = 0; $group < 2 && $i < $n && $text($tokens[$i]) === '('; $group++) {
            $depth = 0;
            $beforeVariable = true;
            for (; $i < $n; $i++) {
                $t = $tokens[$i];
                $at = 'line ' . $line($t) . ': ';
                if ($text($t) === '(' || $text($t) === '[') {
                    $depth++;
                } elseif ($text($t) === ')' || $text($t) === ']') {
                    $depth--;
                    if ($depth === 0) {
                        if ($text($tokens[$i - 1]) === ',') {
                            $problems[] = $at . 'trailing comma in a parameter list';
                        }
                        break;
                    }
                } elseif ($depth === 1 && $text($t) === ',') {
                    $beforeVariable = true;
                } elseif ($depth === 1 && $id($t) === T_VARIABLE) {
                    $beforeVariable = false;
                } elseif ($depth === 1 && $beforeVariable && $text($t) === '|') {
                    $problems[] = $at . 'union type';
                } elseif ($depth === 1 && $beforeVariable && strtolower($text($t)) === 'mixed') {
                    $problems[] = $at . 'mixed type';
                } elseif ($depth === 1 && $isConstructor && in_array($id($t), [T_PUBLIC, T_PRIVATE, T_PROTECTED], true)) {
                    $problems[] = $at . 'constructor promotion';
                }
            }
            $i++;
            if ($i < $n && $id($tokens[$i]) === T_USE) {
                $i++;   // the closure's use (…) list
                continue;
            }
            break;
        }
        if ($i < $n && $text($tokens[$i]) === ':') {
            for ($j = $i + 1; $j < $n && !in_array($text($tokens[$j]), ['{', ';', '=>'], true) && $id($tokens[$j]) !== T_DOUBLE_ARROW; $j++) {
                $word = strtolower($text($tokens[$j]));
                if ($word === '|' || $word === 'mixed' || $word === 'never' || $word === 'static') {
                    $problems[] = 'line ' . $line($tokens[$j]) . ': return type ' . $word;
                }
            }
        }
        return $problems;
    }

    public function testTheSyntaxTreeCheckCatchesWhatItLooksFor(): void
    {
        if (!Php74AstCheck::isAvailable()) {
            self::markTestSkipped('nikic/php-parser is not installed (Debian: php-parser)');
        }
        $problems = implode("\n", Php74AstCheck::check("<?php\nfunction a(int|string \$x, mixed \$y): static { return match (\$x) { default => \$o?->p ?? throw new E() }; }\nclass B { public function __construct(private int \$v) {} }\nfoo(name: 1); \$g = strlen(...); try {} catch (E) {} \$c = \$o::class;\n"));
        foreach (['union type', 'mixed type', 'static type', 'match', '?->', 'throw as an expression', 'constructor promotion', 'named argument', 'first-class callable', 'catch without a variable', '$object::class'] as $expected) {
            self::assertStringContainsString($expected, $problems);
        }
        self::assertSame([], Php74AstCheck::check("<?php\nfunction ok(?int \$a = null, string ...\$c): ?string { throw new E(); }\n\$f = static fn (int \$x): int => \$x;\n"));
    }

    public function testTheScannerCatchesWhatItLooksFor(): void
    {
        $bad = <<<'PHP'
<?php
function a(int|string $x, mixed $y, $z,): static { return match ($x) { default => 1 }; }
class B { public function __construct(private int $v) {} }
$f = fn () => $o?->p;
str_contains('a', 'b');
foo(name: 1);
$x = $y ?? throw new \Exception();
try {} catch (\Exception) {}
$c = $obj::class;
$g = strlen(...);
mb_strlen('x');
#[Attr] function c() {}
$h = function () use ($a,) {};
PHP;
        $problems = implode("\n", self::scan($bad));
        foreach (['union type', 'mixed type', 'trailing comma', 'return type static', 'match', 'constructor promotion', '?->', 'str_contains', 'named argument', 'throw as an expression', 'catch without a variable', '$object::class', 'first-class callable', 'mb_strlen', 'attribute that is not alone'] as $expected) {
            self::assertStringContainsString($expected, $problems);
        }
        self::assertSame([], self::scan("<?php\nfunction ok(?int \$a = null, array \$b = [A | B], string ...\$c): ?string { return \$a ? X : Y; }\n\$f = static fn (int \$x): int => \$x | 1;\n#[\\SensitiveParameter]\n"));
    }
}
