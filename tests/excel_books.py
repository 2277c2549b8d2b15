"""Workbooks laid out the way Excel saves them, with the parts openpyxl cannot keep, and the checks
that a write-back left everything but the written cells byte for byte.

``excel_workbook(path, rows)`` writes, part by part as Excel does: shared strings, Excel's
namespaces and ``mc:Ignorable``, rows with ``spans`` and ``x14ac:dyDescent``, a date-formatted
``Form sent at`` column (styled empty cells), ``Expected return`` as a shared formula
``=K2+TIME(1,30,0)`` with its cached value, a second tab with a dynamic-array ``SORT`` formula
(``xl/metadata.xml``, ``cm="1"``), a Power Query connection (``xl/connections.xml``), ``customXml/``,
printer settings (stored, not deflated), ``calcChain.xml``, a defined name, data validation,
conditional formatting, ``customSheetViews``, ``ignoredErrors`` and an ``<extLst>`` (x14 dropdowns).
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from homevisits.sources.xlsx_sheet import column_letters
from workbooks import ALL_HEADERS, header_of

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
SHEET_NS = (
    f'xmlns="{MAIN}" xmlns:r="{REL}" '
    'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" mc:Ignorable="x14ac xr xr2 xr3" '
    'xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac" '
    'xmlns:xr="http://schemas.microsoft.com/office/spreadsheetml/2014/revision" '
    'xmlns:xr2="http://schemas.microsoft.com/office/spreadsheetml/2015/revision2" '
    'xmlns:xr3="http://schemas.microsoft.com/office/spreadsheetml/2016/revision3" '
    'xr:uid="{00000000-0001-0000-0000-000000000000}"'
)
HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n'
# cellXfs: 0 General, 1 dd/mm/yyyy, 2 hh:mm, 3 dd/mm/yyyy hh:mm, 4 bold header
STYLE_DATE, STYLE_TIME, STYLE_DATETIME, STYLE_HEADER = 1, 2, 3, 4
TAB = "Home Visits"
FORMULA_HEADER = "Expected return"
DATE_COLUMN = "Form sent at"  # formatted as a date column (<col style>): written as a serial
STAFF_LIST = ["Sam Teacher", "Alex Colleague", "Pat Manager"]


def _serial(value: dt.date | dt.datetime | dt.time) -> float:
    if isinstance(value, dt.time):
        return (value.hour * 3600 + value.minute * 60 + value.second) / 86400
    moment = value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())
    delta = moment - dt.datetime(1899, 12, 30)
    return delta.days + delta.seconds / 86400


def _space(text: str) -> str:
    return ' xml:space="preserve"' if text != text.strip() else ""


class _Strings:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.index: dict[str, int] = {}
        self.count = 0

    def __call__(self, text: str) -> int:
        self.count += 1
        if text not in self.index:
            self.index[text] = len(self.items)
            self.items.append(text)
        return self.index[text]


def _cell(ref: str, value: Any, strings: _Strings, style: int | None = None) -> str:
    s = f' s="{style}"' if style is not None else ""
    if value is None:
        return f'<c r="{ref}"{s}/>' if style is not None else ""
    if isinstance(value, bool):
        return f'<c r="{ref}"{s} t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float):
        return f'<c r="{ref}"{s}><v>{value}</v></c>'
    if isinstance(value, dt.datetime):
        return f'<c r="{ref}" s="{style or STYLE_DATETIME}"><v>{_serial(value)!r}</v></c>'
    if isinstance(value, dt.date):
        return f'<c r="{ref}" s="{style or STYLE_DATE}"><v>{_serial(value)}</v></c>'
    if isinstance(value, dt.time):
        return f'<c r="{ref}" s="{style or STYLE_TIME}"><v>{_serial(value)!r}</v></c>'
    return f'<c r="{ref}"{s} t="s"><v>{strings(str(value))}</v></c>'


def excel_workbook(
    path: Path | str, rows: Sequence[Mapping[str, Any]], *, columns: Sequence[str] = ALL_HEADERS
) -> Path:
    """The rows (dicts keyed by header or field) as an Excel-made .xlsx with the features above."""
    path = Path(path)
    headers = [header_of(c) for c in columns]
    strings = _Strings()
    width = len(headers)
    spans = f"1:{width}"
    last = len(rows) + 1
    formula_at = headers.index(FORMULA_HEADER) if FORMULA_HEADER in headers else None
    start_at = headers.index("Start time") if "Start time" in headers else None
    date_at = headers.index(DATE_COLUMN) if DATE_COLUMN in headers else None
    lines = [
        f'<row r="1" spans="{spans}" x14ac:dyDescent="0.25">'
        + "".join(_cell(f"{column_letters(i)}1", h, strings, STYLE_HEADER) for i, h in enumerate(headers))
        + "</row>"
    ]
    chain = []
    for number, row in enumerate(rows, start=2):
        values = {header_of(k): v for k, v in row.items()}
        cells = []
        for i, header in enumerate(headers):
            ref = f"{column_letters(i)}{number}"
            value = values.get(header)
            if i == formula_at and start_at is not None and isinstance(values.get("Start time"), dt.time):
                start = values["Start time"]
                cached = _serial(start) + 1.5 / 24
                start_ref = f"{column_letters(start_at)}{number}"
                if number == 2:
                    f = f'<f t="shared" ref="{ref}:{column_letters(i)}{last}" si="0">{start_ref}+TIME(1,30,0)</f>'
                else:
                    f = '<f t="shared" si="0"/>'
                cells.append(f'<c r="{ref}" s="{STYLE_TIME}">{f}<v>{cached!r}</v></c>')
                chain.append(f'<c r="{ref}" i="1"/>')
                continue
            if i == date_at and value in (None, ""):
                cells.append(f'<c r="{ref}" s="{STYLE_DATETIME}"/>')
                continue
            cells.append(_cell(ref, value if value != "" else None, strings))
        lines.append(f'<row r="{number}" spans="{spans}" x14ac:dyDescent="0.25">' + "".join(cells) + "</row>")
    end = column_letters(width - 1)
    risk = column_letters(headers.index("Risk level")) if "Risk level" in headers else "A"
    cols = f'<cols><col min="1" max="{width}" width="14.7109375" customWidth="1"/></cols>'
    if date_at is not None:
        cols = (
            "<cols>"
            + (f'<col min="1" max="{date_at}" width="14.7109375" customWidth="1"/>' if date_at else "")
            + f'<col min="{date_at + 1}" max="{date_at + 1}" width="16.7109375" style="{STYLE_DATETIME}" customWidth="1"/>'
            + (
                f'<col min="{date_at + 2}" max="{width}" width="14.7109375" customWidth="1"/>'
                if date_at + 1 < width
                else ""
            )
            + "</cols>"
        )
    sheet1 = (
        HEAD
        + f"<worksheet {SHEET_NS}>"
        + '<sheetPr codeName="Sheet1"><pageSetUpPr fitToPage="1"/></sheetPr>'
        + f'<dimension ref="A1:{end}{last}"/>'
        + '<sheetViews><sheetView tabSelected="1" zoomScale="90" workbookViewId="0">'
        + '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
        + '<selection pane="bottomLeft" activeCell="B3" sqref="B3"/></sheetView></sheetViews>'
        + '<sheetFormatPr defaultRowHeight="15" x14ac:dyDescent="0.25"/>'
        + cols
        + "<sheetData>"
        + "".join(lines)
        + "</sheetData>"
        + f'<autoFilter ref="A1:{end}{last}"/>'
        + '<customSheetViews><customSheetView guid="{5D9C2A3B-1111-4A7B-9C2E-6B1F2E0A9D01}" scale="90" '
        + 'showAutoFilter="1"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
        + '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/><pageMargins left="0.7" right="0.7" '
        + 'top="0.75" bottom="0.75" header="0.3" footer="0.3"/><autoFilter ref="A1:B1"/></customSheetView>'
        + "</customSheetViews>"
        + f'<conditionalFormatting sqref="{risk}2:{risk}{last}"><cfRule type="cellIs" dxfId="0" priority="1" '
        + 'operator="equal"><formula>"HIGH"</formula></cfRule></conditionalFormatting>'
        + '<dataValidations count="1"><dataValidation type="list" allowBlank="1" showInputMessage="1" '
        + f'showErrorMessage="1" sqref="{risk}2:{risk}1000"><formula1>"LOW,MEDIUM,HIGH"</formula1>'
        + "</dataValidation></dataValidations>"
        + '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
        + '<pageSetup paperSize="9" orientation="landscape" fitToHeight="0" r:id="rId1"/>'
        + f'<ignoredErrors><ignoredError sqref="A2:A{last}" numberStoredAsText="1"/></ignoredErrors>'
        + '<extLst><ext uri="{CCE6A557-97BC-4b89-ADB6-D9C93CAAB3DF}" '
        + 'xmlns:x14="http://schemas.microsoft.com/office/spreadsheetml/2009/9/main"><x14:dataValidations '
        + 'count="1" xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main"><x14:dataValidation '
        + 'type="list" allowBlank="1" showInputMessage="1" showErrorMessage="1"><x14:formula1><xm:f>Lists!$A$2:$A$4'
        + f"</xm:f></x14:formula1><xm:sqref>{column_letters(headers.index('Lead staff')) if 'Lead staff' in headers else 'B'}2:"
        + f"{column_letters(headers.index('Lead staff')) if 'Lead staff' in headers else 'B'}1000</xm:sqref>"
        + "</x14:dataValidation></x14:dataValidations></ext></extLst>"
        + "</worksheet>"
    )
    ordered = sorted(STAFF_LIST)
    staff = "".join(
        f'<row r="{n}" spans="1:2" x14ac:dyDescent="0.25"><c r="A{n}" t="s"><v>{strings(name)}</v></c>'
        + (
            f'<c r="B{n}" cm="1" t="str"><f t="array" ref="B2:B4">_xlfn._xlws.SORT(A2:A4)</f><v>{ordered[0]}</v></c>'
            if n == 2
            else f'<c r="B{n}" t="str"><v>{ordered[n - 2]}</v></c>'
        )
        + "</row>"
        for n, name in enumerate(STAFF_LIST, start=2)
    )
    sheet2 = (
        HEAD
        + f"<worksheet {SHEET_NS}>"
        + '<dimension ref="A1:B4"/><sheetViews><sheetView workbookViewId="0"/></sheetViews>'
        + '<sheetFormatPr defaultRowHeight="15" x14ac:dyDescent="0.25"/><sheetData>'
        + f'<row r="1" spans="1:2" x14ac:dyDescent="0.25"><c r="A1" s="{STYLE_HEADER}" t="s"><v>{strings("Staff")}</v></c>'
        + f'<c r="B1" s="{STYLE_HEADER}" t="s"><v>{strings("Sorted")}</v></c></row>'
        + staff
        + '</sheetData><pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
        + "</worksheet>"
    )
    shared = (
        HEAD
        + f'<sst xmlns="{MAIN}" count="{strings.count}" uniqueCount="{len(strings.items)}">'
        + "".join(f"<si><t{_space(t)}>{escape(t)}</t></si>" for t in strings.items)
        + "</sst>"
    )
    styles = (
        HEAD
        + f'<styleSheet xmlns="{MAIN}" xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
        + 'mc:Ignorable="x14ac x16r2" xmlns:x14ac="http://schemas.microsoft.com/office/spreadsheetml/2009/9/ac" '
        + 'xmlns:x16r2="http://schemas.microsoft.com/office/spreadsheetml/2015/02/main">'
        + '<numFmts count="3"><numFmt numFmtId="164" formatCode="dd/mm/yyyy;@"/><numFmt numFmtId="165" '
        + 'formatCode="hh:mm;@"/><numFmt numFmtId="166" formatCode="dd/mm/yyyy\\ hh:mm"/></numFmts>'
        + '<fonts count="2" x14ac:knownFonts="1"><font><sz val="11"/><color theme="1"/><name val="Calibri"/>'
        + '<family val="2"/><scheme val="minor"/></font><font><b/><sz val="11"/><color theme="1"/>'
        + '<name val="Calibri"/><family val="2"/><scheme val="minor"/></font></fonts>'
        + '<fills count="2"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/>'
        + '</fill></fills><borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
        + '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
        + '<cellXfs count="5"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
        + '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        + '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        + '<xf numFmtId="166" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
        + '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/></cellXfs>'
        + '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
        + '<dxfs count="1"><dxf><fill><patternFill><bgColor rgb="FFFFC7CE"/></patternFill></fill></dxf></dxfs>'
        + '<tableStyles count="0" defaultTableStyle="TableStyleMedium2" defaultPivotStyle="PivotStyleLight16"/>'
        + "</styleSheet>"
    )
    workbook = (
        HEAD
        + f'<workbook xmlns="{MAIN}" xmlns:r="{REL}" '
        + 'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" mc:Ignorable="x15 xr xr6 xr10 xr2" '
        + 'xmlns:x15="http://schemas.microsoft.com/office/spreadsheetml/2010/11/main" '
        + 'xmlns:xr="http://schemas.microsoft.com/office/spreadsheetml/2014/revision" '
        + 'xmlns:xr6="http://schemas.microsoft.com/office/spreadsheetml/2016/revision6" '
        + 'xmlns:xr10="http://schemas.microsoft.com/office/spreadsheetml/2016/revision10" '
        + 'xmlns:xr2="http://schemas.microsoft.com/office/spreadsheetml/2015/revision2">'
        + '<fileVersion appName="xl" lastEdited="7" lowestEdited="7" rupBuild="27328"/>'
        + '<workbookPr codeName="ThisWorkbook" defaultThemeVersion="166925"/>'
        + '<bookViews><workbookView xWindow="-120" yWindow="-120" windowWidth="29040" windowHeight="15840" '
        + 'xr2:uid="{00000000-000D-0000-FFFF-FFFF00000000}"/></bookViews>'
        + f'<sheets><sheet name="{TAB}" sheetId="1" r:id="rId1"/><sheet name="Lists" sheetId="3" r:id="rId2"/></sheets>'
        + f'<definedNames><definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">\'{TAB}\'!$A$1:${end}${last}'
        + '</definedName><definedName name="StaffList">Lists!$A$2:$A$4</definedName></definedNames>'
        + '<calcPr calcId="191029"/>'
        + '<extLst><ext uri="{140A7094-0E35-4892-8432-C4D2E57EDEB5}" '
        + 'xmlns:x15="http://schemas.microsoft.com/office/spreadsheetml/2010/11/main"><x15:workbookPr '
        + 'chartTrackingRefBase="1"/></ext></extLst></workbook>'
    )
    rel = '<Relationship Id="{}" Type="{}" Target="{}"/>'
    workbook_rels = (
        HEAD
        + f'<Relationships xmlns="{PKG_REL}">'
        + rel.format("rId8", f"{REL}/sheetMetadata", "metadata.xml")
        + rel.format("rId3", f"{REL}/theme", "theme/theme1.xml")
        + rel.format("rId7", f"{REL}/calcChain", "calcChain.xml")
        + rel.format("rId2", f"{REL}/worksheet", "worksheets/sheet2.xml")
        + rel.format("rId1", f"{REL}/worksheet", "worksheets/sheet1.xml")
        + rel.format("rId6", f"{REL}/sharedStrings", "sharedStrings.xml")
        + rel.format("rId5", f"{REL}/styles", "styles.xml")
        + rel.format("rId4", f"{REL}/connections", "connections.xml")
        + rel.format("rId9", f"{REL}/customXml", "../customXml/item1.xml")
        + "</Relationships>"
    )
    root_rels = (
        HEAD
        + f'<Relationships xmlns="{PKG_REL}">'
        + rel.format("rId3", f"{REL}/extended-properties", "docProps/app.xml")
        + rel.format("rId2", f"{PKG_REL}/metadata/core-properties", "docProps/core.xml")
        + rel.format("rId1", f"{REL}/officeDocument", "xl/workbook.xml")
        + "</Relationships>"
    )
    sheet_rels = (
        HEAD
        + f'<Relationships xmlns="{PKG_REL}">'
        + rel.format("rId1", f"{REL}/printerSettings", "../printerSettings/printerSettings1.bin")
        + "</Relationships>"
    )
    content = "application/vnd.openxmlformats-officedocument"
    types = (
        HEAD
        + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        + f'<Default Extension="bin" ContentType="{content}.spreadsheetml.printerSettings"/>'
        + '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        + '<Default Extension="xml" ContentType="application/xml"/>'
        + f'<Override PartName="/xl/workbook.xml" ContentType="{content}.spreadsheetml.sheet.main+xml"/>'
        + f'<Override PartName="/customXml/itemProps1.xml" ContentType="{content}.customXmlProperties+xml"/>'
        + f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{content}.spreadsheetml.worksheet+xml"/>'
        + f'<Override PartName="/xl/worksheets/sheet2.xml" ContentType="{content}.spreadsheetml.worksheet+xml"/>'
        + f'<Override PartName="/xl/theme/theme1.xml" ContentType="{content}.theme+xml"/>'
        + f'<Override PartName="/xl/styles.xml" ContentType="{content}.spreadsheetml.styles+xml"/>'
        + f'<Override PartName="/xl/sharedStrings.xml" ContentType="{content}.spreadsheetml.sharedStrings+xml"/>'
        + f'<Override PartName="/xl/connections.xml" ContentType="{content}.spreadsheetml.connections+xml"/>'
        + f'<Override PartName="/xl/calcChain.xml" ContentType="{content}.spreadsheetml.calcChain+xml"/>'
        + f'<Override PartName="/xl/metadata.xml" ContentType="{content}.spreadsheetml.sheetMetadata+xml"/>'
        + '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
        + f'<Override PartName="/docProps/app.xml" ContentType="{content}.extended-properties+xml"/>'
        + "</Types>"
    )
    app = (
        HEAD
        + '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties" '
        + 'xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes"><Application>Microsoft Excel'
        + "</Application><DocSecurity>0</DocSecurity><ScaleCrop>false</ScaleCrop><HeadingPairs>"
        + '<vt:vector size="4" baseType="variant"><vt:variant><vt:lpstr>Worksheets</vt:lpstr></vt:variant>'
        + "<vt:variant><vt:i4>2</vt:i4></vt:variant><vt:variant><vt:lpstr>Named Ranges</vt:lpstr></vt:variant>"
        + '<vt:variant><vt:i4>1</vt:i4></vt:variant></vt:vector></HeadingPairs><TitlesOfParts><vt:vector size="3" '
        + f'baseType="lpstr"><vt:lpstr>{TAB}</vt:lpstr><vt:lpstr>Lists</vt:lpstr><vt:lpstr>StaffList</vt:lpstr>'
        + "</vt:vector></TitlesOfParts><Company></Company><LinksUpToDate>false</LinksUpToDate><SharedDoc>false"
        + "</SharedDoc><HyperlinksChanged>false</HyperlinksChanged><AppVersion>16.0300</AppVersion></Properties>"
    )
    core = (
        HEAD
        + '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        + 'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
        + 'xmlns:dcmitype="http://purl.org/dc/dcmitype/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        + "<dc:creator>School Office</dc:creator><cp:lastModifiedBy>School Office</cp:lastModifiedBy>"
        + '<dcterms:created xsi:type="dcterms:W3CDTF">2026-09-01T08:00:00Z</dcterms:created>'
        + '<dcterms:modified xsi:type="dcterms:W3CDTF">2026-11-20T16:30:00Z</dcterms:modified></cp:coreProperties>'
    )
    connections = (
        HEAD
        + f'<connections xmlns="{MAIN}" xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
        + 'mc:Ignorable="xr16" xmlns:xr16="http://schemas.microsoft.com/office/spreadsheetml/2017/revision16">'
        + '<connection id="1" xr16:uid="{6A1F0C55-3B5E-4C2F-9E4A-1D2B3C4D5E6F}" keepAlive="1" '
        + 'name="Query - Staff" description="Connection to the \'Staff\' query in the workbook." type="5" '
        + 'refreshedVersion="8" background="1" saveData="1"><dbPr connection="Provider=Microsoft.Mashup.OleDb.1;'
        + 'Data Source=$Workbook$;Location=Staff;Extended Properties=&quot;&quot;" command="SELECT * FROM [Staff]"/>'
        + "</connection></connections>"
    )
    metadata = (
        HEAD
        + f'<metadata xmlns="{MAIN}" xmlns:xda="http://schemas.microsoft.com/office/spreadsheetml/2017/dynamicarray">'
        + '<metadataTypes count="1"><metadataType name="XLDAPR" minSupportedVersion="120000" copy="1" pasteAll="1" '
        + 'pasteValues="1" merge="1" splitFirst="1" rowColShift="1" clearFormats="1" clearComments="1" assign="1" '
        + 'coerce="1" cellMeta="1"/></metadataTypes><futureMetadata name="XLDAPR" count="1"><bk><extLst><ext '
        + 'uri="{bdbb8cdc-fa1e-496e-a857-3c3f30c029c3}"><xda:dynamicArrayProperties fDynamic="1" fCollapsed="0"/>'
        + '</ext></extLst></bk></futureMetadata><cellMetadata count="1"><bk><rc t="1" v="0"/></bk></cellMetadata>'
        + "</metadata>"
    )
    calc_chain = HEAD + f'<calcChain xmlns="{MAIN}">' + "".join(chain) + '<c r="B2" i="3" a="1"/></calcChain>'
    custom_item = (
        HEAD
        + '<b:Sources xmlns:b="http://schemas.openxmlformats.org/officeDocument/2006/bibliography" SelectedStyle="\\APASixthEditionOfficeOnline.xsl" StyleName="APA" Version="6"/>'
    )
    custom_props = (
        HEAD
        + '<ds:datastoreItem ds:itemID="{9B3F1E2A-5C4D-4E6F-8A7B-0C1D2E3F4A5B}" '
        + 'xmlns:ds="http://schemas.openxmlformats.org/officeDocument/2006/customXml"><ds:schemaRefs><ds:schemaRef '
        + 'ds:uri="http://schemas.openxmlformats.org/officeDocument/2006/bibliography"/></ds:schemaRefs>'
        + "</ds:datastoreItem>"
    )
    custom_rels = (
        HEAD
        + f'<Relationships xmlns="{PKG_REL}">'
        + rel.format("rId1", f"{REL}/customXmlProps", "itemProps1.xml")
        + "</Relationships>"
    )
    theme = (
        HEAD
        + '<a:theme xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" name="Office Theme">'
        + '<a:themeElements><a:clrScheme name="Office"><a:dk1><a:sysClr val="windowText" lastClr="000000"/></a:dk1>'
        + '<a:lt1><a:sysClr val="window" lastClr="FFFFFF"/></a:lt1><a:dk2><a:srgbClr val="44546A"/></a:dk2>'
        + '<a:lt2><a:srgbClr val="E7E6E6"/></a:lt2><a:accent1><a:srgbClr val="4472C4"/></a:accent1>'
        + '<a:accent2><a:srgbClr val="ED7D31"/></a:accent2><a:accent3><a:srgbClr val="A5A5A5"/></a:accent3>'
        + '<a:accent4><a:srgbClr val="FFC000"/></a:accent4><a:accent5><a:srgbClr val="5B9BD5"/></a:accent5>'
        + '<a:accent6><a:srgbClr val="70AD47"/></a:accent6><a:hlink><a:srgbClr val="0563C1"/></a:hlink>'
        + '<a:folHlink><a:srgbClr val="954F72"/></a:folHlink></a:clrScheme><a:fontScheme name="Office">'
        + '<a:majorFont><a:latin typeface="Calibri Light"/><a:ea typeface=""/><a:cs typeface=""/></a:majorFont>'
        + '<a:minorFont><a:latin typeface="Calibri"/><a:ea typeface=""/><a:cs typeface=""/></a:minorFont>'
        + '</a:fontScheme><a:fmtScheme name="Office"><a:fillStyleLst><a:solidFill><a:schemeClr val="phClr"/>'
        + '</a:solidFill><a:solidFill><a:schemeClr val="phClr"/></a:solidFill><a:solidFill><a:schemeClr '
        + 'val="phClr"/></a:solidFill></a:fillStyleLst><a:lnStyleLst><a:ln w="6350"><a:solidFill><a:schemeClr '
        + 'val="phClr"/></a:solidFill></a:ln><a:ln w="12700"><a:solidFill><a:schemeClr val="phClr"/></a:solidFill>'
        + '</a:ln><a:ln w="19050"><a:solidFill><a:schemeClr val="phClr"/></a:solidFill></a:ln></a:lnStyleLst>'
        + "<a:effectStyleLst><a:effectStyle><a:effectLst/></a:effectStyle><a:effectStyle><a:effectLst/>"
        + "</a:effectStyle><a:effectStyle><a:effectLst/></a:effectStyle></a:effectStyleLst><a:bgFillStyleLst>"
        + '<a:solidFill><a:schemeClr val="phClr"/></a:solidFill><a:solidFill><a:schemeClr val="phClr"/>'
        + '</a:solidFill><a:solidFill><a:schemeClr val="phClr"/></a:solidFill></a:bgFillStyleLst></a:fmtScheme>'
        + "</a:themeElements></a:theme>"
    )
    printer = bytes(range(256)) * 4  # a DEVMODE blob as Excel stores it: opaque bytes
    parts: list[tuple[str, bytes, int]] = [
        ("[Content_Types].xml", types.encode(), zipfile.ZIP_DEFLATED),
        ("_rels/.rels", root_rels.encode(), zipfile.ZIP_DEFLATED),
        ("xl/workbook.xml", workbook.encode(), zipfile.ZIP_DEFLATED),
        ("xl/_rels/workbook.xml.rels", workbook_rels.encode(), zipfile.ZIP_DEFLATED),
        ("xl/worksheets/sheet1.xml", sheet1.encode(), zipfile.ZIP_DEFLATED),
        ("xl/worksheets/sheet2.xml", sheet2.encode(), zipfile.ZIP_DEFLATED),
        ("xl/theme/theme1.xml", theme.encode(), zipfile.ZIP_DEFLATED),
        ("xl/styles.xml", styles.encode(), zipfile.ZIP_DEFLATED),
        ("xl/sharedStrings.xml", shared.encode(), zipfile.ZIP_DEFLATED),
        ("xl/worksheets/_rels/sheet1.xml.rels", sheet_rels.encode(), zipfile.ZIP_DEFLATED),
        ("xl/printerSettings/printerSettings1.bin", printer, zipfile.ZIP_STORED),
        ("xl/connections.xml", connections.encode(), zipfile.ZIP_DEFLATED),
        ("xl/calcChain.xml", calc_chain.encode(), zipfile.ZIP_DEFLATED),
        ("xl/metadata.xml", metadata.encode(), zipfile.ZIP_DEFLATED),
        ("customXml/item1.xml", custom_item.encode(), zipfile.ZIP_DEFLATED),
        ("customXml/_rels/item1.xml.rels", custom_rels.encode(), zipfile.ZIP_DEFLATED),
        ("customXml/itemProps1.xml", custom_props.encode(), zipfile.ZIP_DEFLATED),
        ("docProps/core.xml", core.encode(), zipfile.ZIP_DEFLATED),
        ("docProps/app.xml", app.encode(), zipfile.ZIP_DEFLATED),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, method in parts:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            archive.writestr(info, data, compresslevel=9 if method == zipfile.ZIP_DEFLATED else None)
    return path


# ---------------------------------------------------------------- what changed


def members(path: Path) -> dict[str, tuple[int, int, bytes]]:
    """Each member's (compression method, CRC, raw stored bytes), in the package's order."""
    out = {}
    with zipfile.ZipFile(path) as archive, path.open("rb") as raw:
        for info in archive.infolist():
            raw.seek(info.header_offset + 26)
            name_length, extra_length = (
                int.from_bytes(raw.read(2), "little"),
                int.from_bytes(raw.read(2), "little"),
            )
            raw.seek(info.header_offset + 30 + name_length + extra_length)
            out[info.filename] = (info.compress_type, info.CRC, raw.read(info.compress_size))
    return out


def read_member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(name)


_CELL = re.compile(rb'<c r="([A-Z]+\d+)"[^>]*?(?:/>|>.*?</c>)', re.S)


def without_cells(xml: bytes, refs: set[str]) -> bytes:
    """The part with the elements of the cells ``refs`` taken out, and ``spans``/``dimension`` blanked."""
    kept = _CELL.sub(lambda m: b"" if m[1].decode() in refs else m[0], xml)
    kept = re.sub(rb'<row r="(\d+)"( spans="[^"]*")?', rb'<row r="\1"', kept)
    kept = re.sub(rb'<row r="\d+"[^>]*>(?:</row>)', b"", kept)
    return re.sub(rb'<dimension ref="[^"]*"/>', b"<dimension/>", kept)


def cell_xml(xml: bytes, ref: str) -> bytes | None:
    for match in _CELL.finditer(xml):
        if match[1].decode() == ref:
            return match[0]
    return None
